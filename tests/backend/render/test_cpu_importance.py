"""The CPU importance sampling kernel against the renderer's PyTorch terms."""

from __future__ import annotations

import pytest
import torch

from backend import cpu_build
from backend.render.compositing import compositing_weights, sample_deltas
from backend.render.cpu_importance import importance_depths, library, supports
from backend.render.ray_sampling import (
    importance_draws,
    importance_samples,
    stratified_draws,
    stratified_samples,
)


def coarse_pass(rays: int, samples: int, dtype: torch.dtype, seed: int = 0):
    """Stratified depths in [near, far] with dense, thin and empty stretches of density."""
    generator = torch.Generator().manual_seed(seed)
    near = torch.rand(rays, generator=generator).to(dtype)
    far = near + 1.0 + torch.rand(rays, generator=generator).to(dtype)
    depths = stratified_samples(near, far, stratified_draws(rays, samples, generator).to(dtype))
    density = torch.rand(rays, samples, generator=generator).to(dtype) * 30.0
    density *= torch.rand(rays, samples, generator=generator) > 0.6
    density[: rays // 4] = 0.0  # rays through empty space
    return depths, density, far


def torch_importance(depths, density, far, u):
    return importance_samples(depths, compositing_weights(density, sample_deltas(depths, far)), u)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("jittered", [False, True])
def test_depths_equal_the_pytorch_terms(dtype, jittered):
    assert library() is not None  # the kernel is what is compared
    depths, density, far = coarse_pass(400, 32, dtype)
    generator = torch.Generator().manual_seed(1) if jittered else None
    u = importance_draws(400, 24, generator).to(dtype)
    fast = importance_depths(depths, density, u)
    reference = torch_importance(depths, density, far, u)
    if dtype == torch.float64:
        torch.testing.assert_close(fast, reference, atol=1e-12, rtol=1e-12)
    else:
        # A level in a bin of probability ~1e-5 (the weight padding alone) moves by the
        # CDF's rounding over that probability, times the bin's width: 0.1% of the depths
        # moved by more than 2e-6 (at most 7e-4 over 20 seeds, all in near-empty bins).
        difference = (fast - reference).abs()
        assert difference.max() < 2e-3 and (difference > 2e-6).float().mean() < 0.005
    assert (fast[:, 1:] >= fast[:, :-1]).all()  # sorted levels give sorted depths


def test_long_rays():  # the per-ray scratch is allocated for any sample count
    depths, density, far = coarse_pass(8, 3000, torch.float64)
    u = importance_draws(8, 500, torch.Generator().manual_seed(2)).double()
    fast = importance_depths(depths, density, u)
    torch.testing.assert_close(fast, torch_importance(depths, density, far, u))


def test_levels_at_and_past_the_ends_of_the_cdf_and_the_fewest_samples():
    depths, density, far = coarse_pass(50, 3, torch.float64)
    u = torch.tensor([0.0, 1e-9, 0.5, 1.0 - 1e-9, 1.0, 1.5]).expand(50, 6).contiguous()
    fast = importance_depths(depths, density, u)
    torch.testing.assert_close(fast, torch_importance(depths, density, far, u))


def test_samples_it_cannot_take_are_refused_with_the_shape():
    assert supports(torch.zeros(4, 3))
    assert not supports(torch.zeros(4, 2))
    assert not supports(torch.zeros(4, 8, dtype=torch.bfloat16))
    with cpu_build.reference_path():
        assert not supports(torch.zeros(4, 8))
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        importance_depths(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 5))


def test_every_thread_count_gives_the_same_depths():
    depths, density, _ = coarse_pass(101, 16, torch.float32)  # rays not a multiple of threads
    u = importance_draws(101, 8, torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2, 3, 8):
            torch.set_num_threads(count)
            results.append(importance_depths(depths, density, u))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], other) for other in results[1:])


def test_mismatched_shapes_are_refused_with_them():
    depths, density, _ = coarse_pass(4, 8, torch.float32)
    with pytest.raises(ValueError, match=r"density must be \(4, 8\).*\(4, 7\)"):
        importance_depths(depths, density[:, :7], torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"u \[4, F\].*\(3, 5\)"):
        importance_depths(depths, density, torch.zeros(3, 5))
