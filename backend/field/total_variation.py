"""Total variation of a voxel grid: how much neighbouring voxels differ, as a smoothness loss.

For a grid g [1, C, r, r, r] and every pair of neighbours along the three axes, d = g_j - g_i:

    squared       TV_2(g) = mean(d^2)                             (a heat flow under gradient
                                                                   descent: its pull on a step
                                                                   grows with the step's height)
    Charbonnier   TV_c(g) = mean(sqrt(d^2 + eps^2) - eps)          (~ d^2 / (2 eps) for |d| << eps,
                                                                   ~ |d| for |d| >> eps: its pull
                                                                   is at most 1 whatever the step)

The squared form smooths ripples and edges alike, so it rounds a cube's edges and corners; the
Charbonnier form smooths ripples below eps as the squared one does, but pulls no harder on a
surface's jump than on a small bump, so edges stay where the distillation puts them.
"""

from __future__ import annotations

import torch

from backend.field import cpu_variation


def _differences(grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbouring differences d along z, y and x of [1, C, r, r, r]."""
    return grid.diff(dim=2), grid.diff(dim=3), grid.diff(dim=4)


def squared_variation(grid: torch.Tensor) -> torch.Tensor:
    """TV_2 of the module docstring, summed over the three axes; [1, C, r, r, r] -> []. On CPU
    one pass of `cpu_variation` each way."""
    if cpu_variation.supports(grid):
        return cpu_variation.variation(grid, 0.0)
    return sum(d.pow(2).mean() for d in _differences(grid))


def charbonnier_variation(grid: torch.Tensor, eps: float) -> torch.Tensor:
    """TV_c of the module docstring, summed over the three axes; [1, C, r, r, r] -> []. On CPU
    one pass of `cpu_variation` each way."""
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if cpu_variation.supports(grid):
        return cpu_variation.variation(grid, eps)
    return sum((d.pow(2) + eps * eps).sqrt().mean() - eps for d in _differences(grid))
