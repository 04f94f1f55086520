"""SJC: the PAAS score estimate, its VE <-> DDPM mapping, and the gradient on the renders."""

from __future__ import annotations

import pytest
import torch

from backend.guidance.distillation import gradient_injection_loss
from backend.guidance.sjc import SJC, SJCConfig, noise_level, paas_score, sjc_gradient
from tests.tiny_priors import tiny_pixel_prior


def _guided(prior, prompt: str, scale: float, batch: int):
    cond = prior.encode_text([prompt] * batch)
    uncond = prior.encode_text([""] * batch)
    return lambda x_t, t: prior.guided_noise(x_t, t, cond, uncond, scale)


def test_paas_estimate_equals_the_average_of_its_draws(pixel_prior):
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    t = torch.tensor([120, 640])
    noises = torch.randn(5, 2, 3, 16, 16)
    guided = _guided(pixel_prior, "a green cone", 30.0, 2)
    estimate = paas_score(pixel_prior, x0, guided, t, noises)
    draws = [paas_score(pixel_prior, x0, guided, t, n[None]) for n in noises]
    assert torch.allclose(estimate, torch.stack(draws).mean(0), atol=1e-5)
    # the draws really differ, so the average is not trivially any one of them
    assert not torch.allclose(draws[0], draws[1], atol=1e-3)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_one_draw_is_the_ve_denoiser_score(prediction_type):
    """(D(x + sigma n) - x) / sigma^2 with SJC's own denoiser for a DDPM model
    (adapt_sd.py): D(z) = z - sigma eps_hat(z / sqrt(1 + sigma^2), t)."""
    prior = tiny_pixel_prior(prediction_type)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    t = torch.tensor([40, 900])
    n = torch.randn(2, 3, 16, 16)
    guided = _guided(prior, "a blue torus", 7.5, 2)
    a = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    sigma = ((1 - a) / a).sqrt()
    assert torch.allclose(noise_level(prior.alphas_cumprod, t), sigma)
    with torch.no_grad():
        z = x + sigma * n
        denoised = z - sigma * guided(z / (1 + sigma**2).sqrt(), t)
        expected = (denoised - x) / sigma**2
    got = paas_score(prior, x, guided, t, n[None])
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_gradient_is_minus_sigma_times_the_score_and_reaches_the_renders(pixel_prior):
    x0 = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    t = torch.tensor([300, 800])
    noises = torch.randn(3, 2, 3, 16, 16)
    guided = _guided(pixel_prior, "a red cube", 30.0, 2)
    grad = sjc_gradient(pixel_prior, x0, guided, t, noises, SJCConfig(guidance_scale=30.0))
    a = pixel_prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        # -sigma * mean_k (n_k - eps_hat_k) / sigma = mean_k (eps_hat_k - n_k), w = 1
        residuals = [guided(a.sqrt() * x0 + (1 - a).sqrt() * n, t) - n for n in noises]
        expected = torch.stack(residuals).mean(0)
    assert torch.allclose(grad, expected, atol=1e-5)
    gradient_injection_loss(x0, grad).backward()
    assert torch.allclose(x0.grad * 2, expected, atol=1e-5)


def test_step_draws_k_noises_at_one_level_per_view(pixel_prior):
    calls: list[torch.Tensor] = []
    guided = _guided(pixel_prior, "a red cube", 30.0, 4)

    def counting(x_t, t):
        calls.append(t)
        return guided(x_t, t)

    x0 = torch.rand(4, 3, 16, 16, requires_grad=True)
    sjc = SJC(pixel_prior, SJCConfig(draws=3))
    step = sjc.step(x0, counting, torch.eye(4).expand(4, 4, 4), 0.5, torch.Generator())
    assert len(calls) == 3 and all(torch.equal(c, step.timesteps) for c in calls)
    assert int(step.timesteps.min()) >= 10 and int(step.timesteps.max()) < 970
    step.loss.backward()
    assert torch.isfinite(x0.grad).all() and x0.grad.abs().sum() > 0
