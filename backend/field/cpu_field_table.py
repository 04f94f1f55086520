"""The grid field's lookup table on CPU, built in one pass of a C kernel.

`DenseGridField` looks up 7 channels per point: the raw density s, the 3 albedo logits, and
the central differences of s in world units (its normals),

    d_x s[z, y, x] = (s[z, y, x + 1] - s[z, y, x - 1]) / (2 h)    (h the voxel spacing;
                                                                    indices clamped to the grid)

and likewise along y and z. In PyTorch that is a replicate pad, three differences, a
concatenation and, for the lookup kernel (`cpu_trilinear`), a channels-last copy, with as many
passes again in the backward: 7.9 ms a preview render on 2 threads (2026-12-07). The kernel
(`cpu_field_table.c`, 2.1 ms) writes the channels-last table [D, H, W, 7] in one pass and takes its
gradient back to s and the logits in one more,

    dL/ds[v] = dL/dtable[v, 0] + (1 / 2h) sum over axes a of
               (sum of dL/dtable[u, d_a] over the u that read v as their upper neighbour
                - the same over the u that read v as their lower one),

which equal the PyTorch terms to float rounding (`tests/backend/field/test_cpu_field_table.py`).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from backend import cpu_build
from backend.cpu_build import POINTER, SIZE, THREADS

CHANNELS = 7
"""Channels of the table: raw density, albedo logits (3), d/dx, d/dy, d/dz of the density."""
SOURCE = Path(__file__).with_name("cpu_field_table.c")
"""The kernel's C source."""


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (turned off, or it could not be built: `cpu_build.load`)."""
    p, n, t = POINTER, SIZE, THREADS  # a data pointer, a size, the thread count
    return cpu_build.load(
        SOURCE,
        "the grid field's lookup table is built in PyTorch",
        {
            "field_table_forward": lambda real: [p, p, n, n, n, real, p, t],
            "field_table_backward": lambda real: [p, n, n, n, real, p, p, t],
        },
    )


def supports(density: torch.Tensor, albedo: torch.Tensor) -> bool:
    """Whether `field_table` can take these grids: the kernel is built, CPU grids [1, 1, D, H, W]
    and [1, 3, D, H, W] of one dtype, fp32 or fp64, 2+ voxels a side, off the reference path
    (`cpu_build.reference_path`)."""
    return (
        density.dim() == 5
        and density.shape[:2] == (1, 1)
        and albedo.shape == (1, 3, *density.shape[2:])
        and min(density.shape[2:]) >= 2
        and albedo.device == density.device
        and albedo.dtype == density.dtype
        and cpu_build.available(library, density)
    )


class _FieldTable(torch.autograd.Function):
    @staticmethod
    def forward(ctx, density: torch.Tensor, albedo: torch.Tensor, spacing: float) -> torch.Tensor:
        depth, height, width = density.shape[2:]
        s, a = density.detach().contiguous(), albedo.detach().contiguous()
        table = s.new_empty(depth, height, width, CHANNELS)
        kernel = cpu_build.kernel(library(), "field_table_forward", s.dtype)
        kernel(s.data_ptr(), a.data_ptr(), depth, height, width, 0.5 / spacing,
               table.data_ptr(), cpu_build.threads())  # fmt: skip
        ctx.spacing = spacing
        return table

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        grad_table = grad_table.contiguous()
        depth, height, width = grad_table.shape[:3]
        ds = grad_table.new_empty(1, 1, depth, height, width)
        da = grad_table.new_empty(1, 3, depth, height, width)
        kernel = cpu_build.kernel(library(), "field_table_backward", grad_table.dtype)
        kernel(grad_table.data_ptr(), depth, height, width, 0.5 / ctx.spacing, ds.data_ptr(),
               da.data_ptr(), cpu_build.threads())  # fmt: skip
        return ds, da, None


def field_table(density: torch.Tensor, albedo: torch.Tensor, spacing: float) -> torch.Tensor:
    """The lookup table [D, H, W, 7] (channels: `CHANNELS`) of a raw density grid `density`
    [1, 1, D, H, W] and albedo logits `albedo` [1, 3, D, H, W] of voxel spacing `spacing`;
    differentiable in both grids. Raises ValueError for grids `supports` refuses."""
    if not supports(density, albedo):
        raise ValueError(
            "the CPU field table takes a built kernel and CPU fp32/fp64 grids [1, 1, D, H, W] "
            "and [1, 3, D, H, W] of one dtype, 2+ voxels a side; got "
            f"{tuple(density.shape)} {density.dtype} and {tuple(albedo.shape)} {albedo.dtype} "
            f"on {density.device} (built: {library() is not None})"
        )
    return _FieldTable.apply(density, albedo, spacing)
