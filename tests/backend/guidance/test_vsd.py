"""VSD: the camera-conditioned LoRA (start, learning, removal) and the particle gradient."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F

from backend.guidance.distillation import TimestepSchedule, gradient_injection_loss
from backend.guidance.lora import CameraLoRA
from backend.guidance.vsd import VSD, VSDConfig, lora_loss, vsd_gradient
from tests.tiny_priors import tiny_pixel_prior


def _cameras(batch: int, seed: int = 0) -> torch.Tensor:
    """[B, 4, 4] camera-to-world matrices at random positions."""
    c2w = torch.eye(4).repeat(batch, 1, 1)
    c2w[:, :3, 3] = torch.randn(batch, 3, generator=torch.Generator().manual_seed(seed)) * 1.5
    return c2w


def _renders(batch: int, size: int) -> torch.Tensor:
    """Fixed renders in model space: a red disc on white, [B, 3, size, size] in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disc = (xx**2 + yy**2 < 0.4).float()
    red = torch.tensor([0.7, -0.8, -0.8]).view(3, 1, 1)
    return (disc * red + (1 - disc) * 0.9).expand(batch, 3, size, size).clone()


def _guided(prior, prompt: str, scale: float, batch: int):
    cond = prior.encode_text([prompt] * batch)
    uncond = prior.encode_text([""] * batch)
    return lambda x_t, t: prior.guided_noise(x_t, t, cond, uncond, scale)


def _unet_fingerprint(prior) -> tuple[list[str], torch.Tensor]:
    """Parameter names and a fixed prediction of the prior's U-Net."""
    g = torch.Generator().manual_seed(7)
    x_t = torch.randn(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        eps = prior.predict_noise(
            x_t, torch.tensor([30, 800]), prior.encode_text(["a red cube"] * 2)
        )
    return [name for name, _ in prior.unet.named_parameters()], eps


def test_lora_model_starts_as_the_pretrained_model_and_leaves_no_trace(pixel_prior):
    names, eps_before = _unet_fingerprint(pixel_prior)
    x_t, t = torch.randn(2, 3, 16, 16), torch.tensor([100, 600])
    with torch.no_grad():
        eps_empty = pixel_prior.predict_noise(x_t, t, pixel_prior.encode_text([""] * 2))
    with CameraLoRA(pixel_prior) as lora, torch.no_grad():
        # zero-initialised LoRA B and camera MLP output: eps_phi = eps_pretrained(x_t, "", t)
        assert torch.allclose(lora.predict_noise(x_t, t, _cameras(2)), eps_empty, atol=1e-6)
        # outside `active` the U-Net is the pretrained one
        assert torch.equal(_unet_fingerprint(pixel_prior)[1], eps_before)
    names_after, eps_after = _unet_fingerprint(pixel_prior)
    assert names_after == names and torch.equal(eps_after, eps_before)


def test_lora_is_removed_when_the_job_fails(pixel_prior):
    names, eps_before = _unet_fingerprint(pixel_prior)
    with pytest.raises(RuntimeError, match="job failed"), VSD(pixel_prior) as vsd:
        vsd.train_lora(_renders(2, 16), _cameras(2), torch.Generator().manual_seed(0))
        raise RuntimeError("job failed")
    names_after, eps_after = _unet_fingerprint(pixel_prior)
    assert names_after == names and torch.equal(eps_after, eps_before)
    assert not any(p.requires_grad for p in pixel_prior.unet.parameters())


def test_an_unclosed_lora_leaves_when_it_is_garbage_collected(pixel_prior):
    names, eps_before = _unet_fingerprint(pixel_prior)
    vsd = VSD(pixel_prior)
    vsd.train_lora(_renders(2, 16), _cameras(2), torch.Generator().manual_seed(0))
    assert _unet_fingerprint(pixel_prior)[0] != names
    del vsd
    gc.collect()
    names_after, eps_after = _unet_fingerprint(pixel_prior)
    assert names_after == names and torch.equal(eps_after, eps_before)


def _over_fixed_draws(prior, x0, value, draws: int, seed: int) -> float:
    """value(t, noise) averaged over fixed (t, noise) draws for renders x0, so before/after
    compare like with like."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for _ in range(draws):
            t = torch.randint(0, prior.num_train_timesteps, (x0.shape[0],), generator=g)
            total += float(value(t, torch.randn(x0.shape, generator=g)))
    return total / draws


def _fixed_loss(prior, lora, x0, c2w, draws: int = 8) -> float:
    """The LoRA loss over fixed draws."""
    return _over_fixed_draws(
        prior, x0, lambda t, noise: lora_loss(prior, lora, x0, c2w, t, noise), draws, 123
    )


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_lora_loss_falls_over_a_few_dozen_steps_on_fixed_renders(prediction_type):
    prior = tiny_pixel_prior(prediction_type)
    x0, c2w = _renders(4, 16), _cameras(4)
    torch.manual_seed(0)
    # Measured on this tiny random prior over 30 steps: at lr 1e-3 the loss falls ~1% (eps) and
    # ~2.5% (v), at 1e-2 ~9% (eps) and ~13% (v); the test uses 1e-2 to see the fall clearly.
    with VSD(prior, VSDConfig(lora_lr=1e-2)) as vsd:
        before = _fixed_loss(prior, vsd.lora, x0, c2w)
        g = torch.Generator().manual_seed(1)
        for _ in range(30):
            vsd.train_lora(x0, c2w, g)
        after = _fixed_loss(prior, vsd.lora, x0, c2w)
        lora_b = [p for n, p in prior.unet.named_parameters() if "lora_B" in n]
        assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # the adapters themselves learn
    assert after < 0.95 * before, (before, after)


def test_lora_loss_targets_v_for_v_prediction_models():
    prior = tiny_pixel_prior("v_prediction")
    x0, c2w = _renders(2, 16), _cameras(2)
    t, noise = torch.tensor([50, 900]), torch.randn(2, 3, 16, 16)
    with CameraLoRA(prior) as lora, torch.no_grad():
        x_t = prior.add_noise(x0, noise, t)
        out = prior.model_output(x_t, t, prior.encode_text([""] * 2))  # LoRA starts at zero
        expected = F.mse_loss(out, prior.scheduler.get_velocity(x0, noise, t))
        assert torch.allclose(lora_loss(prior, lora, x0, c2w, t, noise), expected, atol=1e-6)


def test_particle_gradient_equals_the_formula_for_fixed_noise_and_t(pixel_prior):
    x0 = _renders(2, 16).requires_grad_(True)
    c2w = _cameras(2)
    t, noise = torch.tensor([80, 700]), torch.randn(2, 3, 16, 16)
    guided = _guided(pixel_prior, "a red cube", 7.5, 2)
    config = VSDConfig()
    torch.manual_seed(0)
    with VSD(pixel_prior, config) as vsd:
        g = torch.Generator().manual_seed(2)
        for _ in range(5):  # move the LoRA away from the pretrained model
            vsd.train_lora(x0.detach(), c2w, g)
        grad = vsd_gradient(pixel_prior, vsd.lora, x0, guided, c2w, t, noise, config)

        a = pixel_prior.alphas_cumprod[t].view(-1, 1, 1, 1)
        with torch.no_grad():
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            eps_phi = vsd.lora.predict_noise(x_t, t, c2w)
            eps_pretrained_empty = pixel_prior.predict_noise(
                x_t, t, pixel_prior.encode_text([""] * 2)
            )
            expected = (1 - a) * (guided(x_t, t) - eps_phi)  # w(t) = 1 - alpha_bar_t
            # the LoRA term is the trained model, and it depends on the camera
            assert not torch.allclose(eps_phi, eps_pretrained_empty, atol=1e-4)
            assert not torch.allclose(
                vsd.lora.predict_noise(x_t, t, _cameras(2, seed=5)), eps_phi, atol=1e-6
            )
    assert torch.allclose(grad, expected, atol=1e-5)
    gradient_injection_loss(x0, grad).backward()
    assert torch.allclose(x0.grad * 2, expected, atol=1e-5)


def test_step_anneals_t_and_updates_the_lora(pixel_prior):
    x0, c2w = _renders(4, 16).requires_grad_(True), _cameras(4)
    guided = _guided(pixel_prior, "a red cube", 7.5, 4)
    annealed = VSDConfig(timesteps=TimestepSchedule(t_max_end=0.5, anneal_until=0.2))
    with VSD(pixel_prior, annealed) as vsd:
        lora_b = next(p for p in vsd.lora.trainable_parameters if p.abs().sum() == 0)
        late = vsd.step(x0, guided, c2w, 0.9, torch.Generator().manual_seed(0))
        assert late.timesteps.max() < 500  # t_max annealed 0.98 -> 0.5 by 20% of the run
        assert lora_b.abs().sum() > 0 and vsd.last_lora_loss > 0
        late.loss.backward()
    assert x0.grad is not None and torch.isfinite(x0.grad).all()


def test_vsd_on_a_latent_prior_backpropagates_through_the_vae(latent_prior):
    rgb = torch.rand(2, 3, 32, 32, requires_grad=True)
    x0 = latent_prior.encode_images(rgb)  # [2, 4, 16, 16] latents
    guided = _guided(latent_prior, "a cube", 7.5, 2)
    with VSD(latent_prior) as vsd:
        step = vsd.step(x0, guided, _cameras(2), 0.1, torch.Generator().manual_seed(0))
        assert vsd.last_lora_loss > 0
    step.loss.backward()
    assert rgb.grad is not None and torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0


def _builtin_prior():
    from backend.pipelines.runner import load_prior

    return load_prior(None, torch.device("cpu"))


def _noise_error(prior, predict, x0, draws: int = 6) -> float:
    """Mean || predict(x_t, t) - eps ||^2 over fixed (t, eps) draws: how far a noise prediction
    is from the noise actually added to the renders x0."""

    def error(t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(predict(prior.add_noise(x0, noise, t), t), noise)

    return _over_fixed_draws(prior, x0, error, draws, 321)


def test_lora_of_the_builtin_model_learns_fixed_renders_and_eps_lora_moves_toward_their_noise():
    """At the default LoRA rate, 40 steps on 4 fixed renders lower the LoRA's own loss and move
    eps_lora toward the noise actually added (the renders' score), away from the pretrained
    prediction it starts as (measured: loss -25 to -30%, noise error -15 to -20%)."""
    from backend.guidance.camera_condition import camera_condition

    prior = _builtin_prior()
    x0, c2w = _renders(4, 32), _cameras(4)
    torch.manual_seed(0)
    with VSD(prior, VSDConfig(), prompt="a red sphere") as vsd:
        text = prior.encode_text(["a red sphere"] * 4)
        with torch.no_grad():
            pretrained = _noise_error(
                prior, lambda x_t, t: prior.predict_noise(x_t, t, text, camera_condition(c2w)), x0
            )
            # the LoRA model starts as the pretrained model for the prompt, camera included
            start = _noise_error(prior, lambda x_t, t: vsd.lora.predict_noise(x_t, t, c2w), x0)
        assert start == pytest.approx(pretrained, rel=1e-5)
        before = _fixed_loss(prior, vsd.lora, x0, c2w)
        g = torch.Generator().manual_seed(1)
        for _ in range(40):
            vsd.train_lora(x0, c2w, g)
        after = _fixed_loss(prior, vsd.lora, x0, c2w)
        learnt = _noise_error(prior, lambda x_t, t: vsd.lora.predict_noise(x_t, t, c2w), x0)
    assert after < 0.85 * before, (before, after)
    assert learnt < 0.9 * pretrained, (pretrained, learnt)
