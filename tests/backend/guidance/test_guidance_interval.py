"""Guidance interval: s(t) and the weight by band, the guided noise per sample, and SDS's
gradient with the interval, against the formulas in backend/guidance/guidance_interval.py."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.guidance.camera_condition import camera_condition
from backend.guidance.guidance_interval import GuidanceInterval, guidance_scale_at, interval_at
from backend.guidance.sds import SDSConfig, sds_gradient
from backend.pipelines.presets import DistillConfig
from backend.pipelines.prompt_guidance import PromptEmbeddings, prompt_view_sampler

INTERVAL = GuidanceInterval(t_start=0.6, low_scale=2.0, low_weight=40.0)


def test_the_interval_starts_at_its_share_of_the_run():
    assert interval_at(INTERVAL, 0.29) is None
    assert interval_at(INTERVAL, 0.3) is INTERVAL
    assert interval_at(None, 1.0) is None


def test_scale_and_weight_switch_at_t_start():
    t = torch.tensor([0, 599, 600, 999])
    assert INTERVAL.scale(t, 1000, 30.0).flatten().tolist() == [2.0, 2.0, 30.0, 30.0]
    assert INTERVAL.weight(t, 1000).flatten().tolist() == [40.0, 40.0, 1.0, 1.0]
    assert guidance_scale_at(30.0, None, t, 1000, torch.float32) == 30.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("t_start", 0.0),
        ("t_start", 1.0),
        ("low_scale", -1.0),
        ("low_weight", 0.0),
        ("start_progress", 1.0),
    ],
)
def test_bad_interval_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        GuidanceInterval(**{field: value})


def _embeddings(prior, batch: int):
    return prior.encode_text(["a red cube"] * batch), prior.encode_text([""] * batch)


def test_per_sample_scale_equals_one_call_per_sample(pixel_prior):
    x_t = torch.randn(2, 3, 16, 16)
    t = torch.tensor([100, 900])
    cond, uncond = _embeddings(pixel_prior, 2)
    scale = guidance_scale_at(30.0, INTERVAL, t, 1000, x_t.dtype)
    with torch.no_grad():
        together = pixel_prior.guided_noise(x_t, t, cond, uncond, scale)
        low = pixel_prior.guided_noise(x_t[:1], t[:1], cond[:1], uncond[:1], 2.0)
        high = pixel_prior.guided_noise(x_t[1:], t[1:], cond[1:], uncond[1:], 30.0)
    # Batched and single forwards differ by ~1e-6, which s = 30 scales up.
    assert torch.allclose(together, torch.cat([low, high]), atol=1e-4)


def test_sds_weights_the_low_band_and_follows_the_guided_noise(pixel_prior):
    x0 = torch.randn(2, 3, 16, 16)
    t = torch.tensor([100, 900])
    noise = torch.randn_like(x0)
    cond, uncond = _embeddings(pixel_prior, 2)

    def guided(x_t, t):
        scale = guidance_scale_at(30.0, INTERVAL, t, 1000, x_t.dtype)
        return pixel_prior.guided_noise(x_t, t, cond, uncond, scale)

    plain = sds_gradient(pixel_prior, x0, guided, t, noise, SDSConfig(guidance_scale=30.0))
    with_interval = sds_gradient(
        pixel_prior, x0, guided, t, noise, SDSConfig(guidance_scale=30.0), INTERVAL
    )
    assert torch.allclose(with_interval[0], 40.0 * plain[0], atol=1e-5)
    assert torch.allclose(with_interval[1], plain[1], atol=1e-6)


def test_view_sampler_guides_at_every_t_until_the_interval_starts(pixel_prior):
    config = replace(DistillConfig(steps=11), guidance_interval=INTERVAL)
    embeddings = PromptEmbeddings.encode(pixel_prior, "a red cube")
    sample_views = prompt_view_sampler(pixel_prior, embeddings, config)
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn(config.views, 3, 16, 16)
    t = torch.full((config.views,), 100)
    for step, scale in [(0, 30.0), (2, 30.0), (3, 2.0), (10, 2.0)]:  # progress 0.3 at step 3
        cameras, guided = sample_views(step, generator)
        cond = embeddings.for_cameras(cameras)
        camera = camera_condition(cameras.c2w)
        uncond = embeddings.uncond.expand_as(cond)
        with torch.no_grad():
            expected = pixel_prior.guided_noise(x_t, t, cond, uncond, scale, camera)
            assert torch.allclose(guided(x_t, t), expected, atol=1e-4), step
