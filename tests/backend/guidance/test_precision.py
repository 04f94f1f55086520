"""Mixed precision: the frozen prior in fp16 / bf16, everything trained in fp32, non-finite
gradients counted and failed loudly. The first two tests reproduce the bugs that fp16 had
(VSD's LoRA going NaN after one step; the distillation loss overflowing fp16)."""

from __future__ import annotations

import pytest
import torch

from backend.guidance import precision
from backend.guidance.distillation import DistillationStep
from backend.guidance.precision import (
    NonFiniteGradient,
    NonFiniteGuard,
    all_finite,
    precision_name,
    resolve_precision,
)
from backend.guidance.prior import DiffusionPrior
from backend.guidance.vsd import VSD
from backend.render.cameras import orbit_cameras

HALF = [torch.float16, torch.bfloat16]


def _train_lora(folder: str, dtype: torch.dtype, steps: int = 6) -> tuple[list[float], list]:
    """LoRA losses over `steps` updates on fixed renders, and which trainable tensors moved."""
    prior = DiffusionPrior.load(folder, dtype=dtype)
    assert prior.unet.dtype == dtype
    x0 = prior.encode_images(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    two = torch.ones(2)
    c2w = orbit_cameras(15.0 * two, torch.tensor([0.0, 90.0]), 1.75 * two, 55.0 * two).c2w
    generator = torch.Generator().manual_seed(0)
    with VSD(prior) as vsd:
        params = vsd.lora.trainable_parameters
        assert all(p.dtype == torch.float32 for p in params)  # fp32 master weights
        before = [p.detach().clone() for p in params]
        losses = [vsd.train_lora(x0, c2w, generator) for _ in range(steps)]
        assert all(torch.isfinite(p).all() for p in params)
        moved = [not torch.equal(a, b) for a, b in zip(params, before, strict=True)]
    return losses, moved


@pytest.mark.parametrize("layout", ["sd", "if"])
@pytest.mark.parametrize("dtype", HALF, ids=precision_name)
def test_vsd_lora_learns_in_half_precision_what_it_learns_in_fp32(checkpoints, layout, dtype):
    losses, moved = _train_lora(checkpoints[layout], dtype)
    assert all(torch.isfinite(torch.tensor(losses)))
    reference_losses, reference_moved = _train_lora(checkpoints[layout], torch.float32)
    assert sum(moved) >= len(moved) // 2
    assert moved == reference_moved  # the same adapter matrices and camera MLP train
    assert losses == pytest.approx(reference_losses, rel=0.05)


@pytest.mark.parametrize("dtype", HALF, ids=precision_name)
def test_the_distillation_loss_is_fp32_and_does_not_overflow(checkpoints, dtype):
    prior = DiffusionPrior.load(checkpoints["sd"], dtype=dtype)
    rgb = torch.rand(2, 3, 32, 32, requires_grad=True)
    x0 = prior.encode_images(rgb)
    assert x0.dtype == torch.float32
    grad = 20.0 * torch.randn_like(x0)  # RMS 20 per element: 0.5 |g|^2 overflows fp16
    step = DistillationStep.from_gradient(x0, grad, torch.tensor([500, 500]))
    assert torch.isfinite(step.loss)
    step.loss.backward()
    assert torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_precision_and_names(monkeypatch, has_bf16):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: has_bf16)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if has_bf16 else torch.float32)
    assert resolve_precision("auto", cpu, cpu_bf16=False) == torch.float32
    assert resolve_precision("fp16", cpu) == torch.float16
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    assert precision_name(torch.bfloat16) == "bf16"
    with pytest.raises(ValueError, match=r"precision: 'fp8' is not one of auto, fp32, fp16, bf16"):
        resolve_precision("fp8", cpu)


def test_guard_fails_past_its_limit_naming_what_when_and_which_precision():
    guard = NonFiniteGuard("method sds", "fp16", limit=2)
    assert guard.check(True, 1) and not guard.check(False, 2) and not guard.check(False, 3)
    with pytest.raises(NonFiniteGradient, match=r"method sds .* 3 steps .*step 7.* fp16"):
        guard.check(False, 7)
    run = NonFiniteGuard("vsd's LoRA", "fp16", limit=2, consecutive=True)
    for step in range(10):  # bad steps that do not run on are the loss scale finding its level
        run.check(step % 2 == 0, step + 1)
    assert run.total == 5


def test_builtin_prior_in_bf16_gives_fp32s_distillation_gradient():
    """`auto` runs tiny-shapes in bf16 on CPUs with native bf16. Its SDS direction
    eps_hat - eps (guidance 30, 8 views of "a red cube") stays that of fp32: measured cosine
    0.999, relative error 3-5% at t = 100..800 (2026-12-07)."""
    from backend.guidance.camera_condition import camera_condition
    from backend.pipelines.runner import load_prior

    cpu = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    views = torch.full((8,), 1.0)
    cameras = orbit_cameras(30.0 * views, 45.0 * torch.arange(8.0), 2.5 * views, 40.0 * views)
    camera = camera_condition(cameras.c2w)
    for t in (100, 500, 800):
        steps = torch.full((8,), t)
        directions = []
        for name in ("fp32", "bf16"):
            prior = load_prior(None, cpu, name)
            cond, uncond = prior.encode_text(["a red cube"] * 8), prior.encode_text([""] * 8)
            x_t = prior.add_noise(x0, noise, steps)
            eps_hat = prior.guided_noise(x_t, steps, cond, uncond, 30.0, camera)
            assert eps_hat.dtype == torch.float32
            directions.append((eps_hat - noise).flatten())
        fp32, bf16 = directions
        cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=0)
        assert cosine > 0.995, (t, cosine)
        assert (bf16 - fp32).norm() / fp32.norm() < 0.08, t


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_all_finite_finds_any_nan_or_inf(dtype):
    grid = torch.randn(1, 3, 8, 8, 8).to(dtype)
    assert all_finite([grid, None, torch.zeros(0, dtype=dtype), torch.full((4,), 6e4)])
    assert all_finite([])
    for bad in (float("nan"), float("inf"), float("-inf")):
        broken = grid.clone()
        broken[0, 1, 5, 2, 7] = bad
        assert not all_finite([torch.ones(3), broken])


def test_a_finite_fp64_value_beyond_fp32s_range_is_finite():
    assert all_finite([torch.tensor([1e300, -1e300], dtype=torch.float64)])
    assert not all_finite([torch.tensor([1e300, float("nan")], dtype=torch.float64)])
