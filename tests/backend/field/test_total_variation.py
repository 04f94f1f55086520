"""Total variation of a voxel grid: hand-computed values of a single step, and the bounded pull
of the Charbonnier form on a surface's step."""

from __future__ import annotations

import math

import pytest
import torch

from backend.field.total_variation import charbonnier_variation, squared_variation


def step_grid(height: float, r: int = 4) -> torch.Tensor:
    """[1, 1, r, r, r]: 0 for x < r/2, `height` beyond; one jump in each row of r-1 x-pairs."""
    grid = torch.zeros(1, 1, r, r, r)
    grid[..., r // 2 :] = height
    return grid


def test_a_single_step_by_hand():
    # Along x every row has 3 neighbour pairs, one of which jumps by h; y and z are flat.
    h, eps = 2.0, 0.1
    assert squared_variation(step_grid(h)).item() == pytest.approx(h * h / 3)
    expected = (math.sqrt(h * h + eps * eps) - eps) / 3
    assert charbonnier_variation(step_grid(h), eps).item() == pytest.approx(expected)


def test_small_ripples_are_smoothed_as_by_the_squared_form():
    ripple = 0.001 * torch.randn(1, 3, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    eps = 0.1
    # sqrt(d^2 + eps^2) - eps ~ d^2 / (2 eps) for |d| << eps
    assert charbonnier_variation(ripple, eps).item() == pytest.approx(
        squared_variation(ripple).item() / (2 * eps), rel=1e-3
    )


def pull_on_step(variation, height: float) -> float:
    """d variation / d height of the step."""
    h = torch.tensor(height, requires_grad=True)
    variation(h * step_grid(1.0)).backward()
    return float(h.grad)


def test_the_pull_on_a_step_is_bounded_only_for_charbonnier():
    def charbonnier(g: torch.Tensor) -> torch.Tensor:
        return charbonnier_variation(g, 0.1)

    # Squared: the pull grows with the step (2h/3): a heat flow that wears edges down.
    assert pull_on_step(squared_variation, 10.0) == pytest.approx(
        10 * pull_on_step(squared_variation, 1.0)
    )
    # Charbonnier: h / sqrt(h^2 + eps^2) / 3 < 1/3 whatever the height.
    assert pull_on_step(charbonnier, 10.0) == pytest.approx(1 / 3, rel=1e-3)
    assert pull_on_step(charbonnier, 1.0) == pytest.approx(1 / 3, rel=1e-2)


def test_eps_must_be_positive():
    with pytest.raises(ValueError, match="eps"):
        charbonnier_variation(step_grid(1.0), 0.0)
