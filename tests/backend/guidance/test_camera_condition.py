"""The camera condition c, and how a camera-conditioned prior and the guidance use it."""

from __future__ import annotations

import math

import torch

from backend.builtin_model.architecture import build_unet
from backend.geometry.oriented_box import OrientedBox
from backend.guidance.camera_condition import (
    AZIMUTH_HARMONICS,
    CAMERA_CONDITION_DIM,
    accepts_camera,
    camera_condition,
)
from backend.guidance.vsd import VSD
from backend.pipelines.prompt_guidance import PromptEmbeddings, prompt_guidance
from backend.render.cameras import CameraSamplingConfig, orbit_cameras, sample_cameras
from tests.tiny_priors import tiny_pixel_prior


def _orbit(elevation: list[float], azimuth: list[float]) -> torch.Tensor:
    """[B, 4, 4] camera-to-world of orbit cameras at these (elevation, azimuth) degrees."""
    n = len(elevation)
    cameras = orbit_cameras(
        torch.tensor(elevation),
        torch.tensor(azimuth),
        torch.full((n,), 1.8),
        torch.full((n,), 50.0),
    )
    return cameras.c2w


def _fourier(elevation_deg: float, azimuth_deg: float) -> torch.Tensor:
    """The condition written out from its definition (module docstring)."""
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    k = range(1, AZIMUTH_HARMONICS + 1)
    return torch.tensor(
        [math.sin(el), math.cos(el), *(math.cos(i * az) for i in k), *(math.sin(i * az) for i in k)]
    )


def test_condition_is_fourier_features_of_elevation_and_azimuth():
    cameras = orbit_cameras(
        torch.tensor([0.0, 89.0, 30.0, 75.0]),
        torch.tensor([0.0, 20.0, 90.0, -135.0]),
        torch.tensor([1.5, 2.0, 1.8, 1.6]),
        torch.full((4,), 50.0),
        target=torch.tensor([0.3, -0.2, 0.1]),
    )
    c = camera_condition(cameras.c2w)
    assert c.shape == (4, CAMERA_CONDITION_DIM)
    # from (almost) straight above the azimuth still comes through, from the camera's right axis
    expected = [_fourier(0, 0), _fourier(89, 20), _fourier(30, 90), _fourier(75, -135)]
    assert torch.allclose(c, torch.stack(expected), atol=1e-3)


def test_condition_tells_azimuths_apart_from_above_as_well_as_from_the_side():
    # Seen from 80 degrees up, turning the camera by 45 degrees turns a cube's top by 45 degrees
    # in the image: the condition must change as much as it does for a side view, which the
    # direction toward the camera alone does not (its horizontal part is cos 80 = 0.17 long).
    side = camera_condition(_orbit([0.0, 0.0], [0.0, 45.0]))
    above = camera_condition(_orbit([80.0, 80.0], [0.0, 45.0]))
    assert torch.allclose((above[0] - above[1]).norm(), (side[0] - side[1]).norm(), atol=1e-4)


def test_a_quarter_turn_keeps_the_fourth_harmonic_a_cube_looks_the_same():
    c = camera_condition(_orbit([30.0, 30.0], [10.0, 100.0]))
    cos_k, sin_k = c[:, 2:].split(AZIMUTH_HARMONICS, dim=1)  # [2, K] each
    k4 = AZIMUTH_HARMONICS - 1
    assert torch.allclose(cos_k[0, k4], cos_k[1, k4], atol=1e-5)
    assert torch.allclose(sin_k[0, k4], sin_k[1, k4], atol=1e-5)
    assert not torch.allclose(cos_k[0, 0], cos_k[1, 0], atol=0.1)  # the first one differs


def test_sampled_cameras_give_unit_pairs_and_a_zero_matrix_gives_zero():
    cameras = sample_cameras(16, CameraSamplingConfig(), torch.Generator().manual_seed(0))
    c = camera_condition(cameras.c2w)
    cos_k, sin_k = c[:, 2:].split(AZIMUTH_HARMONICS, dim=1)  # [16, K] each
    assert torch.allclose(c[:, 0] ** 2 + c[:, 1] ** 2, torch.ones(16), atol=1e-5)
    assert torch.allclose(cos_k**2 + sin_k**2, torch.ones(16, AZIMUTH_HARMONICS), atol=1e-5)
    elevation = torch.rad2deg(torch.asin(c[:, 0]))
    assert (elevation - cameras.elevation).abs().max() < 5.0  # centre jitter tilts it slightly
    zero = camera_condition(torch.zeros(2, 4, 4))
    assert torch.equal(zero, torch.zeros(2, CAMERA_CONDITION_DIM))


def test_builtin_architecture_takes_the_camera_and_starts_as_the_text_only_unet():
    torch.manual_seed(0)
    text_only = build_unet(camera_conditioned=False)
    with_camera = build_unet(camera_conditioned=True)
    assert accepts_camera(with_camera) and not accepts_camera(text_only)
    missing, unexpected = with_camera.load_state_dict(text_only.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("class_embedding.") for k in missing)
    x, t, text = torch.randn(2, 3, 32, 32), torch.tensor([10, 900]), torch.randn(2, 12, 64)
    with torch.no_grad():
        expected = text_only(x, t, encoder_hidden_states=text).sample
        got = with_camera(
            x, t, encoder_hidden_states=text, class_labels=torch.randn(2, CAMERA_CONDITION_DIM)
        ).sample
    assert torch.allclose(got, expected, atol=1e-6)


def test_prior_passes_the_camera_to_a_conditioned_unet_and_none_means_zero():
    prior = tiny_pixel_prior(camera_conditioned=True)
    assert prior.camera_conditioned
    torch.nn.init.normal_(prior.unet.class_embedding.linear_2.weight)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([300, 600])
    text = prior.encode_text(["a red cube"] * 2)
    up, side = (
        camera_condition(_orbit([80.0] * 2, [0.0] * 2)),
        camera_condition(_orbit([0.0] * 2, [90.0] * 2)),
    )
    a = prior.predict_noise(x, t, text, up)
    assert not torch.allclose(a, prior.predict_noise(x, t, text, side))
    assert torch.equal(prior.predict_noise(x, t, text), prior.predict_noise(x, t, text, 0 * up))


def test_a_text_only_prior_ignores_the_camera(pixel_prior):
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([300])
    text = pixel_prior.encode_text(["a red cube"])
    assert not pixel_prior.camera_conditioned
    assert torch.equal(
        pixel_prior.predict_noise(x, t, text, torch.ones(1, CAMERA_CONDITION_DIM)),
        pixel_prior.predict_noise(x, t, text),
    )


def test_prompt_guidance_tells_both_branches_each_views_camera():
    prior = tiny_pixel_prior(camera_conditioned=True)
    torch.nn.init.normal_(prior.unet.class_embedding.linear_2.weight)
    embeddings = PromptEmbeddings.encode(prior, "a red cube")
    cameras = sample_cameras(3, CameraSamplingConfig(), torch.Generator().manual_seed(1))
    x_t, t = torch.randn(3, 3, 16, 16), torch.tensor([100, 500, 900])
    got = prompt_guidance(prior, embeddings, cameras, 7.5)(x_t, t)
    cond = embeddings.for_cameras(cameras)
    expected = prior.guided_noise(
        x_t, t, cond, embeddings.uncond.expand_as(cond), 7.5, camera_condition(cameras.c2w)
    )
    assert torch.equal(got, expected)
    unknown_camera = prior.guided_noise(x_t, t, cond, embeddings.uncond.expand_as(cond), 7.5)
    assert not torch.allclose(got, unknown_camera)


def test_vsd_lora_branch_sees_the_same_camera_as_the_pretrained_branch():
    prior = tiny_pixel_prior(camera_conditioned=True)
    torch.nn.init.normal_(prior.unet.class_embedding.linear_2.weight)
    cameras = sample_cameras(2, CameraSamplingConfig(), torch.Generator().manual_seed(2))
    x_t, t = torch.randn(2, 3, 16, 16), torch.tensor([200, 700])
    empty = prior.encode_text([""]).expand(2, -1, -1)
    with VSD(prior) as vsd:  # a fresh LoRA is the pretrained model
        got = vsd.lora.predict_noise(x_t, t, cameras.c2w)
    expected = prior.predict_noise(x_t, t, empty, camera_condition(cameras.c2w))
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_box_turned_90_degrees_sees_a_camera_on_plus_x_as_one_in_front_of_it():
    box = OrientedBox(centre=(0.0, 0.0, 0.0), half_size=(0.2, 0.2, 0.2), yaw_deg=90.0)
    on_plus_x = _orbit([30.0, 70.0], [90.0, 90.0])
    in_front = camera_condition(_orbit([30.0, 70.0], [0.0, 0.0]))  # front is -Y; up stays up
    assert torch.allclose(camera_condition(on_plus_x, box.rotation()), in_front, atol=1e-5)
