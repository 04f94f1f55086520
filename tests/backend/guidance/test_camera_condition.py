"""The camera condition c, and how a camera-conditioned prior and the guidance use it."""

from __future__ import annotations

import torch

from backend.builtin_model.architecture import build_unet
from backend.field.oriented_box import OrientedBox
from backend.guidance.camera_condition import (
    CAMERA_CONDITION_DIM,
    accepts_camera,
    camera_condition,
    condition_in_frame,
)
from backend.guidance.vsd import VSD
from backend.pipelines.prompt_guidance import PromptEmbeddings, prompt_guidance
from backend.render.cameras import CameraSamplingConfig, orbit_cameras, sample_cameras
from tests.tiny_priors import tiny_pixel_prior


def test_condition_is_the_direction_from_the_target_to_the_camera():
    cameras = orbit_cameras(
        torch.tensor([0.0, 90.0 - 1e-4, 30.0]),
        torch.tensor([0.0, 0.0, 90.0]),
        torch.tensor([1.5, 2.0, 1.8]),
        torch.tensor([50.0, 50.0, 50.0]),
        target=torch.tensor([0.3, -0.2, 0.1]),
    )
    c = camera_condition(cameras.c2w)
    s, k = 0.5, 3**0.5 / 2  # sin 30, cos 30
    expected = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [k, 0.0, s]])
    assert c.shape == (3, CAMERA_CONDITION_DIM)
    assert torch.allclose(c, expected, atol=1e-3)


def test_sampled_cameras_give_unit_conditions_and_a_zero_matrix_gives_zero():
    cameras = sample_cameras(16, CameraSamplingConfig(), torch.Generator().manual_seed(0))
    c = camera_condition(cameras.c2w)
    to_camera = torch.nn.functional.normalize(cameras.position, dim=-1)
    assert torch.allclose(c.norm(dim=-1), torch.ones(16), atol=1e-5)
    assert (c * to_camera).sum(-1).min() > 0.95  # centre jitter only tilts it slightly
    assert torch.equal(camera_condition(torch.zeros(2, 4, 4)), torch.zeros(2, 3))


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
        got = with_camera(x, t, encoder_hidden_states=text, class_labels=torch.randn(2, 3)).sample
    assert torch.allclose(got, expected, atol=1e-6)


def test_prior_passes_the_camera_to_a_conditioned_unet_and_none_means_zero():
    prior = tiny_pixel_prior(camera_conditioned=True)
    assert prior.camera_conditioned
    torch.nn.init.normal_(prior.unet.class_embedding.linear_2.weight)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([300, 600])
    text = prior.encode_text(["a red cube"] * 2)
    up, side = torch.tensor([[0.0, 0.0, 1.0]] * 2), torch.tensor([[1.0, 0.0, 0.0]] * 2)
    a = prior.predict_noise(x, t, text, up)
    assert not torch.allclose(a, prior.predict_noise(x, t, text, side))
    assert torch.equal(prior.predict_noise(x, t, text), prior.predict_noise(x, t, text, 0 * up))


def test_a_text_only_prior_ignores_the_camera(pixel_prior):
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([300])
    text = pixel_prior.encode_text(["a red cube"])
    assert not pixel_prior.camera_conditioned
    assert torch.equal(
        pixel_prior.predict_noise(x, t, text, torch.ones(1, 3)),
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


def test_a_box_turned_90_degrees_sees_a_camera_on_plus_x_from_its_front():
    box = OrientedBox(centre=(0.0, 0.0, 0.0), half_size=(0.2, 0.2, 0.2), yaw_deg=90.0)
    c = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    expected = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])  # front is -Y; up stays up
    assert torch.allclose(condition_in_frame(c, box.rotation()), expected, atol=1e-6)
