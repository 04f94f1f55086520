"""The mesh rasteriser on CUDA through nvdiffrast (Laine et al. 2020), when it is installed:
the same three steps and signatures as `backend.render.mesh_raster` (rasterise, interpolate,
antialias), so `backend.render.mesh_renderer` uses either. nvdiffrast's `antialias` is the
analytic edge antialiasing the PyTorch rasteriser reimplements.

The projection flips y, so nvdiffrast's image row 0 is the top row, as in every BoxDream image
(`camera_rays`); pixel centres are where `camera_rays` puts them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import torch

from backend.render.cameras import Cameras

CLIP_NEAR = 0.01
"""Near plane of the clip-space projection, scene units."""
CLIP_FAR = 100.0
"""Far plane of the clip-space projection, scene units."""

_contexts: dict[torch.device, Any] = {}


def available(device: torch.device) -> bool:
    """True when `device` is CUDA and nvdiffrast can be imported."""
    return device.type == "cuda" and importlib.util.find_spec("nvdiffrast") is not None


@dataclass(frozen=True, eq=False)
class NvdiffrastRaster:
    """One nvdiffrast rasterisation of B views."""

    rast: torch.Tensor
    """[B, H, W, 4] (u, v, z/w, face id + 1), nvdiffrast's output."""
    clip: torch.Tensor
    """[B, V, 4] clip-space vertices (differentiable)."""
    triangles: torch.Tensor
    """[F, 3] int32 vertex indices."""

    @property
    def hit(self) -> torch.Tensor:
        """[B, H, W] bool: pixels a face covers."""
        return self.rast[..., 3] > 0

    @property
    def depth(self) -> torch.Tensor:
        """[B, H, W] clip-space z / w of the nearest face (0 on misses)."""
        return self.rast[..., 2]


def clip_positions(
    vertices: torch.Tensor, cameras: Cameras, height: int, width: int
) -> torch.Tensor:
    """OpenGL clip coordinates [B, V, 4] of vertices [V, 3], y flipped (module docstring)."""
    c2w = cameras.c2w.to(vertices)
    rotation, position = c2w[:, :3, :3], c2w[:, :3, 3]
    cam = torch.einsum("bji,bvj->bvi", rotation, vertices[None] - position[:, None])
    depth = -cam[..., 2]
    focal = 1.0 / torch.tan(0.5 * cameras.fovy.to(vertices))[:, None]  # NDC units
    n, f = CLIP_NEAR, CLIP_FAR
    z = (f + n) / (f - n) * depth - 2.0 * f * n / (f - n)
    x = cam[..., 0] * focal * height / width
    y = -cam[..., 1] * focal
    return torch.stack([x, y, z, depth], -1).contiguous()


def rasterise(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    neighbours: torch.Tensor,
    cameras: Cameras,
    height: int,
    width: int,
) -> NvdiffrastRaster:
    """nvdiffrast's rasterisation of B views (`neighbours` is unused: nvdiffrast finds the
    silhouettes itself)."""
    import nvdiffrast.torch as dr

    device = vertices.device
    if device not in _contexts:
        _contexts[device] = dr.RasterizeCudaContext(device=device)
    clip = clip_positions(vertices, cameras, height, width)
    triangles = faces.to(torch.int32).contiguous()
    rast, _ = dr.rasterize(_contexts[device], clip, triangles, resolution=[height, width])
    return NvdiffrastRaster(rast=rast, clip=clip, triangles=triangles)


def interpolate(raster: NvdiffrastRaster, attributes: torch.Tensor) -> torch.Tensor:
    """Per-vertex attributes [V, C] -> per-pixel [B, H, W, C] (zeros where no face is)."""
    import nvdiffrast.torch as dr

    out, _ = dr.interpolate(attributes.contiguous(), raster.rast, raster.triangles)
    return out


def antialias(raster: NvdiffrastRaster, image: torch.Tensor) -> torch.Tensor:
    """nvdiffrast's analytic antialiasing of [B, H, W, C] (gradients at silhouettes)."""
    import nvdiffrast.torch as dr

    return dr.antialias(image.contiguous(), raster.rast, raster.clip, raster.triangles)
