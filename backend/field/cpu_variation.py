"""Total variation of a grid on CPU, loss and gradient each in one pass of a C kernel.

PyTorch builds the loss from three `diff`s per grid, their squares (or Charbonnier terms) and
means, and its backward from as many again, each a pass over the grid. The kernel
(`cpu_variation.c`, built on first use by `cpu_build`) computes the loss in one pass (sums in
fp64) and dL/dg in another, with rho the penalty of `total_variation` and n_a the number of
neighbour pairs along axis a:

    dL/dg_v = sum over axes a of (rho'(g_v - g_v-) - rho'(g_v+ - g_v)) / n_a

(v- and v+ the neighbours before and after v along a, each term only where it exists). It
equals the PyTorch terms to float rounding (`tests/backend/field/test_cpu_variation.py`).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from backend import cpu_build
from backend.cpu_build import POINTER, SIZE, THREADS

SOURCE = Path(__file__).with_name("cpu_variation.c")
"""The kernel's C source."""


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (turned off, or it could not be built: `cpu_build.load`)."""
    p, n, t = POINTER, SIZE, THREADS  # a data pointer, a size, the thread count
    return cpu_build.load(
        SOURCE,
        "total variation runs as PyTorch operations",
        {
            "variation": lambda real: [p, n, n, n, n, real, t],
            "variation_backward": lambda real: [p, n, n, n, n, real, real, p, t],
        },
        restypes={"variation": ctypes.c_double},  # the loss, summed in fp64
    )


def supports(grid: torch.Tensor) -> bool:
    """Whether `variation` can take this grid: the kernel is built, a CPU [1, C, D, H, W]
    grid of 2+ voxels a side (a side of one has no neighbour pairs, whose mean PyTorch calls
    NaN) in fp32 or fp64, off the reference path (`cpu_build.reference_path`)."""
    return (
        grid.dim() == 5
        and grid.shape[0] == 1
        and min(grid.shape[2:]) >= 2
        and cpu_build.available(library, grid)
    )


class _Variation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grid: torch.Tensor, eps: float) -> torch.Tensor:
        values = grid.detach().contiguous()
        kernel = cpu_build.kernel(library(), "variation", grid.dtype)
        loss = kernel(values.data_ptr(), *values.shape[1:], eps, cpu_build.threads())
        ctx.save_for_backward(values)
        ctx.eps = eps
        return grid.new_tensor(loss)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor, None]:
        (values,) = ctx.saved_tensors
        grad = torch.empty_like(values)
        kernel = cpu_build.kernel(library(), "variation_backward", values.dtype)
        kernel(values.data_ptr(), *values.shape[1:], ctx.eps, float(grad_loss),
               grad.data_ptr(), cpu_build.threads())  # fmt: skip
        return grad, None


def variation(grid: torch.Tensor, eps: float) -> torch.Tensor:
    """The total variation of `grid` [1, C, D, H, W] -> []: squared (TV_2) for eps <= 0, else
    Charbonnier (TV_c) with that eps; differentiable in the grid. Raises ValueError for a grid
    `supports` refuses."""
    if not supports(grid):
        raise ValueError(
            "the CPU total variation takes a built kernel and a CPU fp32/fp64 [1, C, D, H, W] "
            f"grid of 2+ voxels a side; got {tuple(grid.shape)} {grid.dtype} on {grid.device} "
            f"(built: {library() is not None})"
        )
    return _Variation.apply(grid, eps)
