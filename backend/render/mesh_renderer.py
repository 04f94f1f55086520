"""Differentiable renderer of a refinable surface (`backend.field.surface_mesh.SurfaceMesh`):
rasterise, interpolate positions and normals, colour from the surface's albedo field, shade as
the volume renderer does, composite over the background, antialias.

Gradients reach the vertices through the interpolated positions (albedo lookups, lighting),
the interpolated vertex normals (lighting) and the antialiased silhouettes; they reach the
colour through the albedo. On CUDA with nvdiffrast installed the rasteriser is nvdiffrast's,
otherwise the PyTorch one (`backend.render.mesh_raster`); both take the same steps.
Same `Cameras`, shading modes and `RenderOutput` as the volume renderer, so the distillation
loop takes either.
"""

from __future__ import annotations

from types import ModuleType
from typing import Protocol

import torch
import torch.nn.functional as F

from backend.geometry.mesh_topology import vertex_normals
from backend.render import mesh_raster, nvdiffrast_raster
from backend.render.cameras import Cameras
from backend.render.renderer import RenderConfig, RenderOutput
from backend.render.shading import ShadingConfig, shade


class RenderableSurface(Protocol):
    """What the mesh renderer needs of a surface."""

    faces: torch.Tensor
    """[F, 3] int64 vertex indices, outward winding."""
    neighbours: torch.Tensor
    """[F, 3] int64 face across each edge (`backend.geometry.mesh_topology.face_neighbours`)."""

    def vertices(self) -> torch.Tensor:
        """[V, 3] positions (differentiable)."""
        ...

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] points -> [N, 3] colour in [0, 1]."""
        ...


def rasteriser_for(device: torch.device, allow_nvdiffrast: bool = True) -> ModuleType:
    """`nvdiffrast_raster` on CUDA when nvdiffrast is installed (and allowed), else
    `mesh_raster` (pure PyTorch)."""
    if allow_nvdiffrast and nvdiffrast_raster.available(device):
        return nvdiffrast_raster
    return mesh_raster


def render_mesh(
    surface: RenderableSurface,
    cameras: Cameras,
    height: int,
    width: int,
    modes: torch.Tensor,
    backgrounds: torch.Tensor,
    config: RenderConfig | None = None,
    shading: ShadingConfig = ShadingConfig(),
    generator: torch.Generator | None = None,
    *,
    allow_nvdiffrast: bool = True,
) -> RenderOutput:
    """Render B views of `surface` (the volume renderer's signature; `config` and `generator`
    are unused: a rasteriser takes no samples).

    modes: [B] ShadingMode values; backgrounds: [B, 3]. Returns rgb [B, 3, H, W], opacity
    [B, 1, H, W] (antialiased coverage), depth [B, 1, H, W], normal [B, 3, H, W] (world) and
    orientation 0 (a closed outward mesh shows no back faces).
    """
    vertices = surface.vertices()
    device = vertices.device
    b = len(cameras)
    cameras = cameras.to(device)
    raster_ops = rasteriser_for(device, allow_nvdiffrast)
    normals = vertex_normals(vertices, surface.faces)
    raster = raster_ops.rasterise(
        vertices, surface.faces, surface.neighbours, cameras, height, width
    )
    attributes = raster_ops.interpolate(raster, torch.cat([vertices, normals], -1))
    hit = raster.hit.reshape(b, -1)  # [B, H*W]
    points = attributes[..., :3].reshape(b, -1, 3)
    normal = F.normalize(attributes[..., 3:].reshape(b, -1, 3), dim=-1)
    albedo = torch.zeros_like(points).index_put((hit,), surface.albedo(points[hit]))
    colour = shade(albedo, normal, points, cameras.light_position, modes.to(device), shading)
    opacity = hit[..., None].to(colour.dtype)
    rgb = opacity * colour + (1.0 - opacity) * backgrounds.to(device)[:, None, :]
    rgba = torch.cat([rgb, opacity], -1).view(b, height, width, 4)
    rgba = raster_ops.antialias(raster, rgba)

    def image(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(b, height, width, -1).permute(0, 3, 1, 2)

    return RenderOutput(
        rgb=image(rgba[..., :3]),
        opacity=image(rgba[..., 3:]),
        depth=image(raster.depth),
        normal=image(normal),
        orientation=torch.zeros((), device=device),
    )
