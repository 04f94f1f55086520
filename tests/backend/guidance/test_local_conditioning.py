"""Locally conditioned noise against the per-region guided predictions of a tiny U-Net."""

from __future__ import annotations

import pytest
import torch

from backend.guidance.camera_condition import CAMERA_CONDITION_DIM
from backend.guidance.guidance_interval import GuidanceInterval
from backend.guidance.local_conditioning import local_conditioning, resize_masks
from tests.tiny_priors import tiny_pixel_prior

SCALE = 7.5


def region_masks(batch: int, size: int, cell: int) -> torch.Tensor:
    """[B, 3, size, size] one-hot masks made of cell x cell blocks: left half region 0, the
    top of the right half region 1, the rest region 2 ("none")."""
    owner = torch.full((batch, size, size), 2, dtype=torch.long)
    half = (size // cell // 2) * cell
    owner[:, :, :half] = 0
    owner[:, :half, half:] = 1
    return torch.nn.functional.one_hot(owner, 3).permute(0, 3, 1, 2).float()


def text(prior, prompt: str, batch: int) -> torch.Tensor:
    """[B, L, D] embeddings of one prompt."""
    return prior.encode_text([prompt]).expand(batch, -1, -1)


def setting(prior, batch: int = 2):
    generator = torch.Generator().manual_seed(0)
    channels = prior.unet.config.in_channels
    side = prior.unet.config.sample_size
    x_t = torch.randn(batch, channels, side, side, generator=generator)
    t = torch.tensor([300, 700])[:batch]
    prompts = ("a red cube", "a blue sphere", "a table", "")
    return (x_t, t, *(text(prior, prompt, batch) for prompt in prompts))


@pytest.mark.parametrize("with_scene_prompt", [True, False])
def test_combined_noise_equals_per_mask_predictions(pixel_prior, with_scene_prompt):
    x_t, t, red, blue, scene, empty = setting(pixel_prior)
    masks = region_masks(2, 16, cell=1)
    texts = [red, blue, scene if with_scene_prompt else None]
    eps_hat = local_conditioning(pixel_prior, texts, empty, masks, SCALE)(x_t, t)

    owner = masks.argmax(dim=1, keepdim=True)  # [B, 1, h, w]
    for region, text in enumerate(texts):
        if text is None:
            expected = pixel_prior.predict_noise(x_t, t, empty)
        else:
            expected = pixel_prior.guided_noise(x_t, t, text, empty, SCALE)
        here = (owner == region).expand_as(eps_hat)
        assert here.any()
        torch.testing.assert_close(eps_hat[here], expected[here], rtol=1e-4, atol=1e-4)


def test_a_guidance_interval_sets_each_views_scale_by_its_timestep(pixel_prior):
    x_t, t, red, blue, _, empty = setting(pixel_prior)  # t = 300 and 700 of 1,000
    masks = region_masks(2, 16, cell=1)
    interval = GuidanceInterval(t_start=0.5, low_scale=2.0)
    eps_hat = local_conditioning(
        pixel_prior, [red, blue, None], empty, masks, SCALE, None, interval
    )(x_t, t)
    scale = torch.tensor([2.0, SCALE]).view(2, 1, 1, 1)  # s_low below t_start, s above
    owner = masks.argmax(dim=1, keepdim=True)
    for region, text in enumerate([red, blue]):
        expected = pixel_prior.guided_noise(x_t, t, text, empty, scale)
        here = (owner == region).expand_as(eps_hat)
        torch.testing.assert_close(eps_hat[here], expected[here], rtol=1e-4, atol=1e-4)


def test_latent_model_masks_are_area_averaged_to_latent_size(latent_prior):
    # 32 x 32 render masks, 16 x 16 latents: region blocks of 2 x 2 pixels map to whole latents.
    x_t, t, red, blue, _, empty = setting(latent_prior)
    masks = region_masks(2, 32, cell=2)
    texts = [red, blue, None]
    eps_hat = local_conditioning(latent_prior, texts, empty, masks, SCALE)(x_t, t)
    small = resize_masks(masks, (16, 16))
    assert torch.equal(small, region_masks(2, 16, cell=1))
    guided = [latent_prior.guided_noise(x_t, t, text, empty, SCALE) for text in (red, blue)]
    guided.append(latent_prior.predict_noise(x_t, t, empty))
    expected = sum(small[:, i : i + 1] * g for i, g in enumerate(guided))
    torch.testing.assert_close(eps_hat, expected, rtol=1e-4, atol=1e-4)


def test_mixed_latent_cell_is_a_convex_combination():
    masks = torch.zeros(1, 2, 4, 4)
    masks[:, 0, :, :1] = 1.0  # one column of four pixels belongs to region 0
    masks[:, 1] = 1.0 - masks[:, 0]
    small = resize_masks(masks, (2, 2))
    torch.testing.assert_close(small[0, :, 0, 0], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(small.sum(dim=1), torch.ones(1, 2, 2))
    assert torch.equal(resize_masks(masks, (8, 8)).sum(dim=1), torch.ones(1, 8, 8))


def test_one_batched_unet_pass(pixel_prior):
    x_t, t, red, blue, scene, empty = setting(pixel_prior)
    guided = local_conditioning(
        pixel_prior, [red, blue, scene], empty, region_masks(2, 16, 1), SCALE
    )
    batches = []
    hook = pixel_prior.unet.register_forward_hook(
        lambda m, args, out: batches.append(args[0].shape[0])
    )
    try:
        guided(x_t, t)
    finally:
        hook.remove()
    assert batches == [2 * 4]  # B views x (unconditional + 3 prompts), in one forward


def test_masks_must_match_regions(pixel_prior):
    _, _, red, _, _, empty = setting(pixel_prior)
    with pytest.raises(ValueError, match="masks"):
        local_conditioning(pixel_prior, [red], empty, region_masks(2, 16, 1), SCALE)


def test_each_region_is_guided_with_its_own_camera():
    prior = tiny_pixel_prior(camera_conditioned=True)
    torch.nn.init.normal_(prior.unet.class_embedding.linear_2.weight)
    x_t, t, red, blue, _, empty = setting(prior)
    masks = region_masks(2, 16, cell=1)
    # two different camera conditions, one per region
    front, side = torch.randn(
        2, 2, CAMERA_CONDITION_DIM, generator=torch.Generator().manual_seed(3)
    ).unbind(0)
    eps_hat = local_conditioning(
        prior, [red, blue, None], empty, masks, SCALE, [front, side, None]
    )(x_t, t)
    expected = [
        prior.guided_noise(x_t, t, red, empty, SCALE, front),
        prior.guided_noise(x_t, t, blue, empty, SCALE, side),
        prior.predict_noise(x_t, t, empty),  # no prompt, unknown camera
    ]
    owner = masks.argmax(dim=1, keepdim=True)
    for region, prediction in enumerate(expected):
        here = (owner == region).expand_as(eps_hat)
        torch.testing.assert_close(eps_hat[here], prediction[here], rtol=1e-4, atol=1e-5)
    shared_camera = local_conditioning(prior, [red, blue, None], empty, masks, SCALE)(x_t, t)
    assert not torch.allclose(eps_hat, shared_camera)


def test_cameras_cost_no_extra_rows_for_a_prior_without_camera_input(pixel_prior):
    x_t, t, red, blue, _, empty = setting(pixel_prior)
    cameras = [torch.tensor([[0.0, -1.0, 0.0]] * 2), torch.tensor([[1.0, 0.0, 0.0]] * 2), None]
    batches = []
    hook = pixel_prior.unet.register_forward_hook(
        lambda m, args, out: batches.append(args[0].shape[0])
    )
    try:
        local_conditioning(
            pixel_prior, [red, blue, None], empty, region_masks(2, 16, 1), SCALE, cameras
        )(x_t, t)
    finally:
        hook.remove()
    assert batches == [2 * 3]  # B views x (unconditional + 2 prompts), as without cameras
