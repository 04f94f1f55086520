"""Trilinear lookup of a dense grid on CPU: one fused, multi-threaded C kernel.

PyTorch's CPU 3D grid sampler is a generic loop: per point and per channel it recomputes
bounds checks and strided offsets, and its backward scatters channel by channel into a
channels-first gradient. For a preview render's 262,144 points x 7 channels on 2 threads it
takes 16 ms forward and 55 ms forward + backward (split in one batch per thread); this kernel
takes 6 and 14 ms (docs/research/cpu-render-speed.md, 2026-12-07).

The kernel (`cpu_trilinear.c`) reads a channels-last copy of the grid, [D, H, W, C] (axes z,
y, x, channel), so a point's 8 corners are 8 short contiguous reads; `table_lookup` takes such
a table as a caller built it (the grid field's, `cpu_field_table`). With u a point's
continuous voxel coordinate along one axis (align_corners=True, border-clamped, as
`F.grid_sample` with padding_mode="border"):

    u = clamp((x / bound + 1) / 2 * (W - 1), 0, W - 1),  i = min(floor(u), W - 2),  t = u - i
    out[c] = sum over the corners (i + a, j + b, k + e), a, b, e in {0, 1}, of
             w_a(t_x) w_b(t_y) w_e(t_z) grid[k + e, j + b, i + a, c],  w_0(t) = 1 - t, w_1(t) = t

The backward gives dL/dgrid only (the same weights times dL/dout, summed into the corners);
points that need a gradient are looked up by `F.grid_sample` (`grid_field.sample_grid`).
Each thread owns a slab of z-layers of the gradient (slabs holding about equal shares of
the points) and adds every point's corners that fall in it, so no two threads write one
value, there are no per-thread copies to zero and add (inside a render: 7.7 ms against
12.6 ms with copies), and each value sums its points in point order whatever the thread
count. A NaN point gives NaN values and no gradient, as the grid sampler does, and never
reads or writes outside the grid.

The C file is built on first use (`cpu_build`); without a compiler the lookups fall back to
`F.grid_sample` with one warning.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from backend import cpu_build
from backend.cpu_build import POINTER, SIZE, THREADS

SOURCE = Path(__file__).with_name("cpu_trilinear.c")
"""The kernel's C source."""


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (turned off, or it could not be built: `cpu_build.load`)."""
    p, n, t = POINTER, SIZE, THREADS  # a data pointer, a size, the thread count
    return cpu_build.load(
        SOURCE,
        "grid lookups use torch's grid sampler",
        {
            "trilinear_forward": lambda real: [p, n, n, n, n, p, n, real, p, t],
            "trilinear_backward": lambda real: [p, p, n, real, n, n, n, n, p, t],
        },
    )


def supports(grid: torch.Tensor, points: torch.Tensor) -> bool:
    """Whether `trilinear_lookup` can take this lookup: the kernel is built, CPU tensors, a grid
    [1, C, D, H, W] of 2+ voxels a side in fp32 or fp64, points that need no gradient, and off
    the reference path (`cpu_build.reference_path`)."""
    return grid.dim() == 5 and _usable(grid, grid.shape[2:], points)


def _usable(values: torch.Tensor, sides: tuple[int, ...], points: torch.Tensor) -> bool:
    """`supports` for a grid or table `values` of `sides` voxels a side."""
    return (
        points.device.type == "cpu"
        and min(sides) >= 2
        and not points.requires_grad
        and cpu_build.available(library, values)
    )


class _TableLookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: torch.Tensor, points: torch.Tensor, bound: float) -> torch.Tensor:
        depth, height, width, channels = table.shape
        table = table.detach().contiguous()
        points = points.detach().to(table.dtype).contiguous()
        out = table.new_empty(points.shape[0], channels)
        kernel = cpu_build.kernel(library(), "trilinear_forward", table.dtype)
        kernel(table.data_ptr(), depth, height, width, channels, points.data_ptr(),
               points.shape[0], 1.0 / bound, out.data_ptr(), cpu_build.threads())  # fmt: skip
        ctx.save_for_backward(points)
        ctx.table_shape = table.shape
        ctx.bound = bound
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (points,) = ctx.saved_tensors
        depth, height, width, channels = ctx.table_shape
        grad = points.new_empty(depth, height, width, channels)
        grad_out = grad_out.contiguous()
        kernel = cpu_build.kernel(library(), "trilinear_backward", points.dtype)
        kernel(grad_out.data_ptr(), points.data_ptr(), points.shape[0], 1.0 / ctx.bound,
               depth, height, width, channels, grad.data_ptr(), cpu_build.threads())  # fmt: skip
        return grad, None, None


def _refused(what: str, values: torch.Tensor, points: torch.Tensor) -> ValueError:
    return ValueError(
        f"trilinear lookups take CPU fp32/fp64 {what} of 2+ voxels a side and points that "
        f"need no gradient, with the kernel built (built: {library() is not None}); got "
        f"{tuple(values.shape)} {values.dtype} on {values.device}, points "
        f"requires_grad={points.requires_grad} on {points.device}"
    )


def table_lookup(table: torch.Tensor, points: torch.Tensor, bound: float) -> torch.Tensor:
    """Trilinear lookup of a channels-last table [D, H, W, C] spanning [-bound, bound]^3 at
    points [N, 3] -> [N, C], as `trilinear_lookup` of the grid it holds; differentiable in the
    table. Raises ValueError for a lookup the kernel cannot take (`supports`)."""
    if not (table.dim() == 4 and _usable(table, table.shape[:3], points)):
        raise _refused("tables [D, H, W, C]", table, points)
    return _TableLookup.apply(table, points, bound)


def trilinear_lookup(grid: torch.Tensor, points: torch.Tensor, bound: float) -> torch.Tensor:
    """Trilinear lookup of a grid [1, C, D, H, W] spanning [-bound, bound]^3 (axes z, y, x;
    corners on the cube's corners) at points [N, 3] -> [N, C]; border-clamped outside. The
    values of `F.grid_sample(..., align_corners=True, padding_mode="border")`; differentiable
    in the grid. Raises ValueError for a lookup `supports` refuses."""
    if not supports(grid, points):
        raise _refused("grids [1, C, D, H, W]", grid, points)
    return _TableLookup.apply(grid.squeeze(0).permute(1, 2, 3, 0).contiguous(), points, bound)
