"""SDS: the gradient that reaches the image/latent, the CFG formula, timestep ranges."""

from __future__ import annotations

import torch

from backend.guidance.distillation import (
    TimestepSchedule,
    Weighting,
    gradient_injection_loss,
    sample_timesteps,
    weight_of,
)
from backend.guidance.sds import SDS, SDSConfig, sds_gradient


def _guided(prior, prompt: str, scale: float, batch: int):
    cond = prior.encode_text([prompt] * batch)
    uncond = prior.encode_text([""] * batch)
    return cond, uncond, (lambda x_t, t: prior.guided_noise(x_t, t, cond, uncond, scale))


def test_cfg_formula_is_uncond_plus_scale_times_difference(pixel_prior):
    x_t = torch.randn(2, 3, 16, 16)
    t = torch.tensor([100, 700])
    cond, uncond, guided = _guided(pixel_prior, "a red cube", 7.5, 2)
    with torch.no_grad():
        e_c = pixel_prior.predict_noise(x_t, t, cond)
        e_u = pixel_prior.predict_noise(x_t, t, uncond)
        expected = e_u + 7.5 * (e_c - e_u)
        assert torch.allclose(guided(x_t, t), expected, atol=1e-5)
        # s = 1 is the plain conditional prediction
        assert torch.allclose(pixel_prior.guided_noise(x_t, t, cond, uncond, 1.0), e_c, atol=1e-5)


def _check_gradient_matches_formula(prior, x_shape):
    x0 = torch.randn(*x_shape, requires_grad=True)
    t = torch.tensor([50, 900])
    noise = torch.randn(*x_shape)
    _, _, guided = _guided(prior, "a blue sphere", 20.0, 2)
    config = SDSConfig(guidance_scale=20.0)
    grad = sds_gradient(prior, x0, guided, t, noise, config)

    a = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        expected = (1 - a) * (guided(x_t, t) - noise)  # w(t) = 1 - alpha_bar_t
    assert torch.allclose(grad, expected, atol=1e-5)

    loss = gradient_injection_loss(x0, grad)
    loss.backward()
    assert torch.allclose(x0.grad * x0.shape[0], expected, atol=1e-5)


def test_sds_gradient_on_pixels_equals_w_times_eps_difference(pixel_prior):
    _check_gradient_matches_formula(pixel_prior, (2, 3, 16, 16))


def test_sds_gradient_on_latents_equals_w_times_eps_difference(latent_prior):
    _check_gradient_matches_formula(latent_prior, (2, 4, 16, 16))


def test_latent_path_backpropagates_through_the_vae_encoder(latent_prior):
    rgb = torch.rand(2, 3, 24, 24, requires_grad=True)
    x0 = latent_prior.encode_images(rgb)  # resized to 32x32 and encoded -> [2, 4, 16, 16]
    assert x0.shape == (2, 4, 16, 16)
    sds = SDS(latent_prior, SDSConfig(guidance_scale=10.0))
    _, _, guided = _guided(latent_prior, "a cube", 10.0, 2)
    step = sds.step(x0, guided, torch.eye(4).expand(2, 4, 4), 0.5, torch.Generator().manual_seed(0))
    step.loss.backward()
    assert rgb.grad is not None and rgb.grad.abs().sum() > 0
    assert torch.isfinite(rgb.grad).all()


def test_gradient_clip_clamps_and_keeps_a_nan_visible(pixel_prior):
    x0 = torch.randn(2, 3, 16, 16)
    t = torch.tensor([500, 500])
    nan_noise = torch.full_like(x0, float("nan"))
    _, _, guided = _guided(pixel_prior, "a cube", 100.0, 2)
    grad = sds_gradient(pixel_prior, x0, guided, t, nan_noise, SDSConfig(grad_clip=0.1))
    # not zeroed: the loop counts it (NonFiniteGuard) instead of training on a silent 0
    assert torch.isnan(grad).all()
    grad = sds_gradient(pixel_prior, x0, guided, t, torch.randn_like(x0), SDSConfig(grad_clip=0.1))
    assert grad.abs().max() <= 0.1 + 1e-7


def test_weightings():
    a = torch.tensor([0.9, 0.5, 0.1])
    t = torch.arange(3)
    assert torch.allclose(weight_of(Weighting.SDS, a, t).flatten(), 1 - a)
    assert torch.allclose(weight_of(Weighting.UNIFORM, a, t).flatten(), torch.ones(3))
    assert torch.allclose(weight_of(Weighting.SNR_SQRT, a, t).flatten(), (a * (1 - a)).sqrt())


def test_timesteps_stay_in_range_and_anneal():
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(TimestepSchedule(), 0.0, 1000, 10_000, g)
    assert t.min() >= 20 and t.max() < 980
    annealed = TimestepSchedule(t_max=0.98, t_max_end=0.5, anneal_until=0.2)
    assert annealed.bounds(0.0) == (0.02, 0.98)
    assert annealed.bounds(1.0) == (0.02, 0.5)
    t = sample_timesteps(annealed, 0.5, 1000, 10_000, g)
    assert t.max() < 500
