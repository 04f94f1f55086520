"""Shading and compositing of the rendered samples on CPU: one fused C kernel per direction.

Per ray, with w_i = T_i alpha_i the compositing weights (`compositing`), c_i the shaded colour
(`shading.shade`: albedo a_i times ambient + diffuse max(0, n_i . l_i), the albedo alone for
unlit views, the intensity in grey for textureless ones) and d the ray's direction, the renderer
sums

    colour = sum_i w_i c_i,  opacity = sum_i w_i,  depth = sum_i w_i t_i,
    normal = sum_i w_i n_i,  orientation = sum_i sg(w_i) max(0, n_i . d)^2.

In PyTorch that is some twenty passes over [R, S, 3] tensors and as many again in the backward:
22 ms of a preview render's forward + backward on 2 threads (2026-12-07). The kernel
(`cpu_composite.c`, 9.4 ms) makes one pass over each ray's samples forward, and two backward:
with G_i = dL/dw_i (the outputs' gradients dotted with c_i, 1, t_i and n_i) and
T_{i+1} = T_i (1 - alpha_i),

    dL/dsigma_i = delta_i (T_{i+1} G_i - sum_{j > i} w_j G_j),

and dL/da_i, dL/dn_i from the shading's and the sums' local derivatives. The transmittance is
a running product rather than the exponential of a cumulative sum: equal up to float rounding
(`tests/backend/render/test_cpu_composite.py`).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from backend import cpu_build
from backend.cpu_build import POINTER, SIZE, THREADS
from backend.render.shading import ShadingConfig, ShadingMode

SOURCE = Path(__file__).with_name("cpu_composite.c")
"""The kernel's C source."""


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (turned off, or it could not be built: `cpu_build.load`)."""
    p, n, t = POINTER, SIZE, THREADS  # a data pointer, a size, the thread count
    arrays, outputs, gradients = [p] * 10, [p] * 5, [p] * 9  # the backward's: 8 and scratch
    return cpu_build.load(
        SOURCE,
        "rays are shaded and composited in PyTorch",
        {
            "composite_forward": lambda real: [*arrays, n, n, real, real, *outputs, t],
            "composite_backward": lambda real: [*arrays, n, n, real, real, *gradients, t],
        },
    )


def supports(density: torch.Tensor) -> bool:
    """Whether `composite` can take samples of this density [R, S]: the kernel is built, CPU,
    fp32 or fp64, off the reference path (`cpu_build.reference_path`)."""
    return density.dim() == 2 and cpu_build.available(library, density)


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        density: torch.Tensor,
        albedo: torch.Tensor,
        normal: torch.Tensor,
        rays: tuple[torch.Tensor, ...],
        shading: ShadingConfig,
    ) -> tuple[torch.Tensor, ...]:
        r, s = density.shape
        samples = tuple(x.detach().contiguous() for x in (density, albedo, normal))
        colour, normal_sum = density.new_empty(r, 3), density.new_empty(r, 3)
        opacity, depth, orientation = (density.new_empty(r) for _ in range(3))
        kernel = cpu_build.kernel(library(), "composite_forward", density.dtype)
        kernel(*(x.data_ptr() for x in (*samples, *rays)), r, s, shading.ambient,
               shading.diffuse, colour.data_ptr(), opacity.data_ptr(), depth.data_ptr(),
               normal_sum.data_ptr(), orientation.data_ptr(), cpu_build.threads())  # fmt: skip
        ctx.save_for_backward(*samples, *rays)
        ctx.shading = shading
        return colour, opacity, depth, normal_sum, orientation

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        density, albedo, normal, *rays = ctx.saved_tensors
        r, s = density.shape
        grads = tuple(g.contiguous() for g in grads)
        d_density, d_albedo, d_normal = (torch.empty_like(x) for x in (density, albedo, normal))
        kernel = cpu_build.kernel(library(), "composite_backward", density.dtype)
        threads = cpu_build.threads()
        scratch = density.new_empty(threads, 3 * s)  # each thread's w, T and dL/dw of a ray
        kernel(*(x.data_ptr() for x in (density, albedo, normal, *rays)), r, s,
               ctx.shading.ambient, ctx.shading.diffuse, *(g.data_ptr() for g in grads),
               d_density.data_ptr(), d_albedo.data_ptr(), d_normal.data_ptr(),
               scratch.data_ptr(), threads)  # fmt: skip
        return d_density, d_albedo, d_normal, None, None


def composite(
    density: torch.Tensor,
    albedo: torch.Tensor,
    normal: torch.Tensor,
    depths: torch.Tensor,
    deltas: torch.Tensor,
    points: torch.Tensor,
    dirs: torch.Tensor,
    light: torch.Tensor,
    modes: torch.Tensor,
    shading: ShadingConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shade and composite R rays of S samples: density, depths, deltas [R, S]; albedo, normal,
    points [R, S, 3]; dirs, light [R, 3]; modes [R] `ShadingMode` values -> colour [R, 3],
    opacity [R], depth [R], normal [R, 3], orientation [R] (see the module docstring);
    differentiable in density, albedo and normal (not orientation's weights). Raises
    ValueError for samples `supports` refuses."""
    if not supports(density):
        raise ValueError(
            "the CPU compositing takes a built kernel and CPU fp32/fp64 [R, S] densities; got "
            f"{tuple(density.shape)} {density.dtype} on {density.device} "
            f"(built: {library() is not None})"
        )
    r, s = density.shape
    shapes = {
        "albedo": (albedo, (r, s, 3)),
        "normal": (normal, (r, s, 3)),
        "depths": (depths, (r, s)),
        "deltas": (deltas, (r, s)),
        "points": (points, (r, s, 3)),
        "dirs": (dirs, (r, 3)),
        "light": (light, (r, 3)),
        "modes": (modes, (r,)),
    }
    for name, (x, shape) in shapes.items():
        if tuple(x.shape) != shape or x.device != density.device:
            raise ValueError(f"composite: {name} must be {shape} on {density.device} for "
                             f"densities {(r, s)}; got {tuple(x.shape)} on {x.device}")  # fmt: skip
    if albedo.dtype != density.dtype or normal.dtype != density.dtype:
        raise ValueError(
            f"composite: albedo and normal must be {density.dtype} like the densities; got "
            f"{albedo.dtype} and {normal.dtype}"
        )
    dtype = density.dtype
    rays = (
        *(x.detach().to(dtype).contiguous() for x in (depths, deltas, points, dirs, light)),
        (modes == int(ShadingMode.ALBEDO)).to(torch.uint8),  # unlit
        (modes == int(ShadingMode.TEXTURELESS)).to(torch.uint8),  # white
    )
    return _Composite.apply(density, albedo, normal, rays, shading)
