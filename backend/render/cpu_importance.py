"""Importance samples from a coarse pass on CPU: one C kernel from densities to depths.

The renderer's no-gradient step between its two passes takes the coarse samples' densities to
compositing weights (`compositing.compositing_weights`) and draws the importance samples from
them (`ray_sampling.importance_samples`): in PyTorch some fifteen passes over [R, S] tensors
plus a search and four gathers, 3.4 ms of a preview render on 2 threads (2026-12-07). The
kernel (`cpu_importance.c`, 1.9 ms) does it in one pass per ray: the interior weights
w_1 .. w_{S-2} (with the transmittance a running product, as `cpu_composite`), their CDF (sums
in fp64, as PyTorch's cumulative sum), and for each level u a binary search and the same linear
interpolation between the bin edges. The depths equal `importance_samples`' up to float
rounding (`tests/backend/render/test_cpu_importance.py`).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from backend import cpu_build
from backend.cpu_build import POINTER, SIZE, THREADS
from backend.render.ray_sampling import WEIGHT_PADDING

SOURCE = Path(__file__).with_name("cpu_importance.c")
"""The kernel's C source."""


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (turned off, or it could not be built: `cpu_build.load`)."""
    p, n, t = POINTER, SIZE, THREADS  # a data pointer, a size, the thread count
    return cpu_build.load(
        SOURCE,
        "importance samples are drawn in PyTorch",
        {"importance_depths": lambda real: [p, p, p, n, n, n, real, p, p, t]},
    )


def supports(depths: torch.Tensor) -> bool:
    """Whether `importance_depths` can take coarse samples at these depths [R, S]: the kernel
    is built, CPU, fp32 or fp64, 3 samples a ray or more (one interior bin at least), off the
    reference path (`cpu_build.reference_path`)."""
    return depths.dim() == 2 and depths.shape[1] >= 3 and cpu_build.available(library, depths)


@torch.no_grad()
def importance_depths(depths: torch.Tensor, density: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """[R, S] sorted coarse depths and their densities, [R, F] `importance_draws` levels ->
    [R, F] importance depths: `importance_samples(depths, compositing_weights(density,
    deltas), u)` in one kernel (no gradient). Raises ValueError for depths `supports`
    refuses."""
    if not supports(depths):
        raise ValueError(
            "the CPU importance sampling takes a built kernel and CPU fp32/fp64 depths "
            f"[R, S >= 3]; got {tuple(depths.shape)} {depths.dtype} on "
            f"{depths.device} (built: {library() is not None})"
        )
    r, s = depths.shape
    if density.shape != depths.shape or u.dim() != 2 or u.shape[0] != r:
        raise ValueError(
            f"importance_depths: density must be {(r, s)} like the depths and u [{r}, F]; got "
            f"{tuple(density.shape)} and {tuple(u.shape)}"
        )
    dtype = depths.dtype
    t, sigma = depths.contiguous(), density.to(dtype).contiguous()
    levels = u.to(dtype).contiguous()
    out = depths.new_empty(r, levels.shape[1])
    kernel = cpu_build.kernel(library(), "importance_depths", dtype)
    threads = cpu_build.threads()
    scratch = depths.new_empty(threads, 2 * s)  # each thread's CDF and bin edges of a ray
    kernel(t.data_ptr(), sigma.data_ptr(), levels.data_ptr(), r, s, levels.shape[1],
           WEIGHT_PADDING, out.data_ptr(), scratch.data_ptr(), threads)  # fmt: skip
    return out
