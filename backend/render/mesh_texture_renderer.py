"""Renderer of a textured triangle mesh, differentiable in the texels.

Visibility is not differentiable: each view is rasterised with a z-buffer (the nearest triangle
per pixel centre, `triangle_raster` in screen space), then the pixel's barycentric coordinates
are taken exactly from its camera ray (Moller-Trumbore), which makes them perspective-correct
and puts pixel centres where `camera_rays` puts them. Per pixel, differentiably in the texture:

    uv = sum_k b_k uv_k,   albedo = bilinear(texture, uv),   colour = shade(albedo, n_face, ...)

composited over the view's background (no anti-aliasing: opacity is 0 or 1). Face normals are
flipped toward the camera, so meshes with inconsistent winding shade the same from both sides.
UVs wrap (glTF's default REPEAT sampler). Same `Cameras`, shading and output type as the
volume renderer, so the distillation loop can use either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend.render.cameras import Cameras, camera_rays
from backend.render.mesh_raster import nearest_faces, project
from backend.render.renderer import RenderOutput
from backend.render.shading import ShadingConfig, shade

DEFAULT_SHADING = ShadingConfig()
"""The shading of renders that do not say."""


@dataclass(frozen=True, eq=False)
class TexturedSurface:
    """Triangles that sample textures: several meshes (parts) merged into one vertex list."""

    vertices: torch.Tensor
    """[V, 3] float32 positions in the render frame."""
    faces: torch.Tensor
    """[F, 3] int64 vertex indices."""
    uvs: torch.Tensor
    """[V, 2] float32 texture coordinates (OpenGL: origin bottom-left, image row 0 is v = 1)."""
    texture_ids: torch.Tensor
    """[F] int64: index of the texture each face samples."""

    @classmethod
    def from_parts(
        cls, parts: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    ) -> TexturedSurface:
        """Merge parts (vertices [V_i, 3], faces [F_i, 3], uvs [V_i, 2]); part i samples
        texture i."""
        offset = 0
        faces, ids = [], []
        for index, (vertices, part_faces, _) in enumerate(parts):
            faces.append(part_faces.long() + offset)
            ids.append(torch.full((len(part_faces),), index, dtype=torch.long))
            offset += len(vertices)
        return cls(
            vertices=torch.cat([p[0].float() for p in parts]),
            faces=torch.cat(faces),
            uvs=torch.cat([p[2].float() for p in parts]),
            texture_ids=torch.cat(ids),
        )

    def to(self, device: torch.device | str) -> TexturedSurface:
        return TexturedSurface(
            self.vertices.to(device),
            self.faces.to(device),
            self.uvs.to(device),
            self.texture_ids.to(device),
        )


@dataclass(frozen=True, eq=False)
class Fragments:
    """What each pixel of B views of H x W sees."""

    face_ids: torch.Tensor
    """[B, H, W] int64 nearest face, -1 where the ray misses the mesh."""
    barycentric: torch.Tensor
    """[B, H, W, 3] float32 perspective-correct weights of the face's corners (0 on misses)."""
    depth: torch.Tensor
    """[B, H, W] float32 distance along the unit ray to the surface (0 on misses)."""


def rasterise(
    vertices: torch.Tensor, faces: torch.Tensor, cameras: Cameras, height: int, width: int
) -> Fragments:
    """Z-buffer visibility of a triangle mesh (vertices [V, 3], faces [F, 3]) in B views."""
    with torch.no_grad():
        device = vertices.device
        cameras = cameras.to(device)
        projection = project(vertices.float(), cameras, height, width)
        face_ids = nearest_faces(projection, faces, height, width)
        rays = camera_rays(cameras, height, width)
        barycentric, depth = _ray_barycentric(
            vertices.float(), faces, face_ids, rays.origins, rays.directions
        )
        return Fragments(face_ids=face_ids, barycentric=barycentric, depth=depth)


def _ray_barycentric(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    face_ids: torch.Tensor,
    origins: torch.Tensor,
    directions: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Moller-Trumbore intersection of each pixel's ray with its face: barycentric [B, H, W, 3]
    (clamped to the triangle, renormalised) and distance t [B, H, W]; zeros on misses."""
    hit = face_ids >= 0
    corners = vertices[faces[face_ids[hit]]].double()  # [K, 3, 3]
    o, d = origins[hit].double(), directions[hit].double()
    e1 = corners[:, 1] - corners[:, 0]
    e2 = corners[:, 2] - corners[:, 0]
    p = torch.cross(d, e2, dim=-1)
    det = (e1 * p).sum(-1)
    det = torch.where(det.abs() < 1e-20, torch.full_like(det, 1e-20), det)
    s = o - corners[:, 0]
    u = (s * p).sum(-1) / det
    q = torch.cross(s, e1, dim=-1)
    v = (d * q).sum(-1) / det
    t = (e2 * q).sum(-1) / det
    weights = torch.stack([1.0 - u - v, u, v], -1).clamp(min=0.0)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
    barycentric = torch.zeros(*face_ids.shape, 3, device=face_ids.device)
    barycentric[hit] = weights.float()
    depth = torch.zeros(face_ids.shape, device=face_ids.device)
    depth[hit] = t.float()
    return barycentric, depth


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup, differentiable in the texture: texture [C, H, W], uv [K, 2] (wrapped
    into [0, 1)) -> [K, C]. Texel (i, j) has its centre at u = (j + 0.5) / W,
    v = 1 - (i + 0.5) / H."""
    uv = uv - uv.floor()
    grid = torch.stack([2.0 * uv[:, 0] - 1.0, 1.0 - 2.0 * uv[:, 1]], -1).view(1, 1, -1, 2)
    out = F.grid_sample(
        texture[None],
        grid.to(texture.dtype),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return out.view(texture.shape[0], -1).t()


def render_textured(
    surface: TexturedSurface,
    textures: Sequence[torch.Tensor],
    cameras: Cameras,
    height: int,
    width: int,
    modes: torch.Tensor,
    backgrounds: torch.Tensor,
    shading: ShadingConfig = DEFAULT_SHADING,
) -> RenderOutput:
    """Render B views of the surface; differentiable in `textures` ([3, H_i, W_i] each, in
    [0, 1], texture i for the faces with texture id i).

    modes: [B] ShadingMode values; backgrounds: [B, 3]. Returns rgb [B, 3, H, W], opacity
    [B, 1, H, W] (0 or 1), depth [B, 1, H, W], normal [B, 3, H, W] (world, facing the camera)
    and orientation 0 (a mesh has no density to orient).
    """
    device = surface.vertices.device
    b = len(cameras)
    cameras = cameras.to(device)
    fragments = rasterise(surface.vertices, surface.faces, cameras, height, width)
    hit = (fragments.face_ids >= 0).view(-1)  # [B*H*W]
    face = fragments.face_ids.view(-1)[hit]  # [K]
    weights = fragments.barycentric.view(-1, 3)[hit]  # [K, 3]
    corners = surface.faces[face]  # [K, 3]

    uv = (weights[..., None] * surface.uvs[corners]).sum(1)  # [K, 2]
    texture_of = surface.texture_ids[face]
    albedo_hit = torch.zeros(len(face), 3, device=device, dtype=textures[0].dtype)
    for index, texture in enumerate(textures):
        chosen = texture_of == index
        albedo_hit = albedo_hit.index_put(
            (chosen.nonzero()[:, 0],), sample_texture(texture, uv[chosen])
        )

    v = surface.vertices[surface.faces[face]]  # [K, 3, 3]
    points_hit = (weights[..., None] * v).sum(1)
    normal_hit = F.normalize(torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1), dim=-1)
    view_of_hit = torch.arange(b, device=device).repeat_interleave(height * width)[hit]
    to_camera = cameras.position[view_of_hit] - points_hit
    normal_hit = torch.where(
        (normal_hit * to_camera).sum(-1, keepdim=True) < 0, -normal_hit, normal_hit
    )

    def per_pixel(values: torch.Tensor) -> torch.Tensor:
        full = torch.zeros(b * height * width, values.shape[-1], device=device, dtype=values.dtype)
        return full.index_put((hit.nonzero()[:, 0],), values).view(b, height * width, -1)

    albedo, normal, points = per_pixel(albedo_hit), per_pixel(normal_hit), per_pixel(points_hit)
    colour = shade(albedo, normal, points, cameras.light_position, modes.to(device), shading)
    opacity = hit.view(b, height * width, 1).to(colour.dtype)
    rgb = opacity * colour + (1.0 - opacity) * backgrounds.to(device)[:, None, :].to(colour.dtype)

    def image(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(b, height, width, -1).permute(0, 3, 1, 2)

    return RenderOutput(
        rgb=image(rgb),
        opacity=image(opacity),
        depth=image(fragments.depth),
        normal=image(normal),
        orientation=torch.zeros((), device=device),
    )
