"""The CPU trilinear kernel against `F.grid_sample` (align_corners=True, border padding)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.field.cpu_trilinear import supports, table_lookup, trilinear_lookup


def grid_sample(grid: torch.Tensor, points: torch.Tensor, bound: float) -> torch.Tensor:
    n = points.shape[0]
    out = F.grid_sample(
        grid,
        (points / bound).view(1, n, 1, 1, 3),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
    return out.view(grid.shape[1], n).t()


@pytest.mark.parametrize("shape", [(7, 16, 16, 16), (3, 5, 9, 6), (1, 2, 2, 2)])
def test_values_and_grid_gradients_equal_the_grid_sampler(shape, two_threads):
    generator = torch.Generator().manual_seed(0)
    grid = torch.randn(1, *shape, dtype=torch.float64, generator=generator, requires_grad=True)
    # Inside and outside the cube, on its faces and corners (border-clamped there).
    points = torch.rand(3001, 3, dtype=torch.float64, generator=generator) * 3.0 - 1.5
    points[:8] = torch.tensor(
        [[sx, sy, sz] for sx in (-1.5, 1.5) for sy in (-1, 1) for sz in (-1, 1)]
    )
    weights = torch.randn(3001, shape[0], dtype=torch.float64, generator=generator)
    bound = 1.5
    fast = trilinear_lookup(grid, points, bound)
    (fast_grad,) = torch.autograd.grad((fast * weights).sum(), grid)
    reference = grid_sample(grid, points, bound)
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), grid)
    torch.testing.assert_close(fast, reference, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(fast_grad, reference_grad, atol=1e-11, rtol=1e-11)


def test_fp32_matches_within_rounding(two_threads):
    generator = torch.Generator().manual_seed(1)
    grid = torch.randn(1, 7, 64, 64, 64, generator=generator, requires_grad=True)
    points = torch.rand(100_000, 3, generator=generator) * 2.0 - 1.0
    fast = trilinear_lookup(grid, points, 1.0)
    reference = grid_sample(grid, points, 1.0)
    torch.testing.assert_close(fast, reference, atol=2e-5, rtol=1e-5)
    (fast_grad,) = torch.autograd.grad(fast.sum(), grid)
    (reference_grad,) = torch.autograd.grad(reference.sum(), grid)
    torch.testing.assert_close(fast_grad, reference_grad, atol=1e-4, rtol=1e-5)


def test_gradcheck():
    grid = torch.randn(1, 2, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    points = torch.rand(40, 3, dtype=torch.float64) * 2.4 - 1.2
    assert torch.autograd.gradcheck(lambda g: trilinear_lookup(g, points, 1.0), (grid,))


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_every_thread_count_gives_the_same_values_and_gradients(threads):
    # Each thread owns a slab of z-layers; the points here crowd into a few layers at the top
    # and the bottom (unequal slabs), and 8 threads on 12 layers leave some slabs thin.
    generator = torch.Generator().manual_seed(4)
    grid = torch.randn(1, 4, 12, 12, 12, requires_grad=True, generator=generator)
    points = torch.rand(20_001, 3, generator=generator) * 2.0 - 1.0
    points[:15_000, 2] = torch.where(points[:15_000, 2] > 0, 0.9, -0.95)
    results = []
    before = torch.get_num_threads()
    try:
        for count in (1, threads):
            torch.set_num_threads(count)
            out = trilinear_lookup(grid, points, 1.0)
            results.append((out, *torch.autograd.grad((out * out).sum(), grid)))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])  # each value sums in point order
    reference = grid_sample(grid, points, 1.0)
    (reference_grad,) = torch.autograd.grad((reference * reference).sum(), grid)
    torch.testing.assert_close(results[1][1], reference_grad, atol=1e-4, rtol=1e-5)


def test_a_nan_point_gives_nan_and_no_gradient():
    grid = torch.randn(1, 3, 6, 6, 6, requires_grad=True)
    points = torch.tensor([[0.1, 0.2, 0.3], [float("nan"), 0.0, 0.0]])
    out = trilinear_lookup(grid, points, 1.0)
    assert out[1].isnan().all() and out[0].isfinite().all()
    (grad,) = torch.autograd.grad(out, grid, torch.ones_like(out))  # dL/dout = 1 on the NaN too
    (grad_of_the_finite_point,) = torch.autograd.grad(
        trilinear_lookup(grid, points[:1], 1.0).sum(), grid
    )
    assert torch.equal(grad, grad_of_the_finite_point)


def test_lookups_it_cannot_take_are_refused_with_the_reason():
    grid = torch.zeros(1, 1, 4, 4, 4)
    assert not supports(grid.bfloat16(), torch.zeros(1, 3))
    assert not supports(torch.zeros(1, 1, 1, 4, 4), torch.zeros(1, 3))
    points = torch.zeros(1, 3, requires_grad=True)
    assert not supports(grid, points)
    with pytest.raises(ValueError, match="requires_grad=True"):
        trilinear_lookup(grid, points, 1.0)
    with pytest.raises(ValueError, match=r"tables \[D, H, W, C\].*\(1, 1, 4, 4, 4\)"):
        table_lookup(grid, torch.zeros(1, 3), 1.0)  # a grid, not a channels-last table


def test_a_table_gives_the_lookup_of_the_grid_it_holds():
    generator = torch.Generator().manual_seed(2)
    grid = torch.randn(1, 4, 6, 5, 7, dtype=torch.float64, generator=generator)
    table = grid[0].permute(1, 2, 3, 0).contiguous().requires_grad_(True)
    points = torch.rand(500, 3, dtype=torch.float64, generator=generator) * 2.4 - 1.2
    out = table_lookup(table, points, 1.0)
    torch.testing.assert_close(out, grid_sample(grid, points, 1.0), atol=1e-12, rtol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), table)
    (expected,) = torch.autograd.grad(
        grid_sample(grid.requires_grad_(True), points, 1.0).sum(), grid
    )
    torch.testing.assert_close(grad, expected[0].permute(1, 2, 3, 0), atol=1e-12, rtol=1e-12)
