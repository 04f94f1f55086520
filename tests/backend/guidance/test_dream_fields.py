"""Dream Fields' losses against their formulas, and CLIP's gradient reaching the field."""

from __future__ import annotations

import pytest
import torch

from backend.field.grid_field import DenseGridField, GridFieldConfig
from backend.guidance.dream_fields import (
    DreamFields,
    TransmittanceTarget,
    clip_loss,
    transmittance_loss,
)
from backend.render.cameras import TRAINING_CAMERAS, sample_cameras
from backend.render.renderer import RenderConfig, render
from backend.render.shading import ShadingMode
from tests.tiny_clips import tiny_clip


def test_the_target_transmittance_anneals_from_half_to_0_88_over_500_steps():
    tau = TransmittanceTarget()
    assert tau.at(0) == pytest.approx(0.5)
    assert tau.at(250) == pytest.approx(0.69)
    assert tau.at(500) == pytest.approx(0.88)
    assert tau.at(2000) == pytest.approx(0.88)


def test_transmittance_loss_is_minus_the_clamped_mean_transmittance():
    opacity = torch.tensor([0.2, 0.6, 0.9, 0.1]).view(2, 1, 1, 2).requires_grad_()
    mean_t = float((1 - opacity.detach()).mean())  # 0.55
    # Below tau: L = -mean T, so dL/d opacity = +1 / N for every pixel.
    loss = transmittance_loss(opacity, 0.7)
    assert float(loss.detach()) == pytest.approx(-mean_t)
    loss.backward()
    torch.testing.assert_close(opacity.grad, torch.full_like(opacity, 0.25))
    # Above tau: L = -tau, no gradient (the scene may stay as sparse as it is).
    opacity.grad = None
    loss = transmittance_loss(opacity, 0.5)
    assert float(loss.detach()) == pytest.approx(-0.5)
    loss.backward()
    assert float(opacity.grad.abs().sum()) == 0.0


def test_clip_loss_is_minus_the_mean_cosine():
    images = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=-1)
    text = torch.tensor([1.0, 0.0])
    assert float(clip_loss(images, text)) == pytest.approx(-(1.0 + 2**-0.5) / 2)


def test_clip_gradient_reaches_the_field_through_the_image_encoder():
    clip = tiny_clip()
    method = DreamFields(clip, "a red cube", guidance_scale=1.0)
    field = DenseGridField(GridFieldConfig(resolution=16))
    gen = torch.Generator().manual_seed(0)
    cameras = sample_cameras(2, TRAINING_CAMERAS, gen)
    out = render(
        field,
        cameras,
        32,
        32,
        torch.full((2,), int(ShadingMode.ALBEDO)),
        torch.zeros(2, 3),
        RenderConfig(8, 8),
        generator=gen,
    )
    step = method.step(clip.encode_images(out.rgb), None, cameras.c2w, 0.0, gen)
    # The loss is guidance_scale * L_CLIP of these renders.
    expected = clip_loss(clip.encode_images(out.rgb.detach()), method.text)
    assert float(step.loss.detach()) == pytest.approx(float(expected), abs=1e-5)
    step.loss.backward()
    grads = [p.grad for p in field.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
