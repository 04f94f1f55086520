"""The CPU total-variation kernel against the PyTorch terms (`cpu_build.reference_path`)."""

from __future__ import annotations

import pytest
import torch

from backend.cpu_build import reference_path
from backend.field import cpu_variation
from backend.field.total_variation import charbonnier_variation, squared_variation


def _loss_and_gradient(grid: torch.Tensor, eps: float | None) -> tuple[torch.Tensor, ...]:
    loss = squared_variation(grid) if eps is None else charbonnier_variation(grid, eps)
    return loss, *torch.autograd.grad(3.0 * loss, grid)


@pytest.mark.parametrize("eps", [None, 0.1])
@pytest.mark.parametrize("shape", [(3, 9, 7, 5), (1, 16, 16, 16), (2, 2, 4, 6), (1, 5, 2, 2)])
def test_loss_and_gradient_equal_the_pytorch_terms(shape, eps):
    generator = torch.Generator().manual_seed(5)
    grid = torch.randn(1, *shape, dtype=torch.float64, generator=generator, requires_grad=True)
    assert cpu_variation.supports(grid)
    kernel = _loss_and_gradient(grid, eps)
    with reference_path():
        assert not cpu_variation.supports(grid)
        reference = _loss_and_gradient(grid, eps)
    for a, b in zip(kernel, reference, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_fp32_within_rounding_and_gradcheck():
    grid = torch.randn(1, 4, 32, 32, 32, requires_grad=True)
    kernel = _loss_and_gradient(grid, 0.05)
    with reference_path():
        reference = _loss_and_gradient(grid, 0.05)
    for a, b in zip(kernel, reference, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    small = torch.randn(1, 2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g: cpu_variation.variation(g, 0.2), (small,))
    assert torch.autograd.gradcheck(lambda g: cpu_variation.variation(g, 0.0), (small,))


def test_grids_it_cannot_take_are_refused_with_the_reason():
    grid = torch.zeros(2, 1, 4, 4, 4)
    assert not cpu_variation.supports(grid)
    assert not cpu_variation.supports(torch.zeros(1, 1, 1, 4, 4))  # no pairs along z
    assert not cpu_variation.supports(torch.zeros(1, 1, 4, 4, 4, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4, 4\)"):
        cpu_variation.variation(grid, 0.0)
