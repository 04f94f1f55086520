"""An explicit surface to refine (Magic3D's second stage): a triangle mesh whose vertices move
along their starting normals, coloured by a 3D albedo grid at surface points.

    v_i = v_i^0 + s d_i n_i^0        (d_i the optimised offset, s = `offset_scale`)
    a(x) = sigmoid(logits(x))        (trilinear in the albedo grid, as `DenseGridField`)

Moving only along the normals keeps the triangles from sliding over each other (no flips or
slivers from the tangential noise of score distillation), and a colour field instead of a
texture needs no UVs while optimising; the export bakes it through the final mesh's UVs.
Regularisers (threestudio's names):

    Laplacian     L = mean_i |v_i - mean_{j in N(i)} v_j|^2 / h^2     (h the mean edge length)
    normal consistency  C = mean_{edges (f, g)} rho(1 - n_f . n_g)

with rho(x) = x (threestudio's) or the edge-preserving rho(x) = x / (x + eps) (Geman-McClure):
quadratic-like for small bends, bounded for large ones, so a 90 deg edge costs less than the
same turn spread over several faces; the plain form rounds a cube's edges off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend.field.grid_field import sample_grid
from backend.geometry.mesh_topology import (
    face_neighbours,
    face_normals,
    unique_edges,
    vertex_normals,
)


@dataclass(frozen=True)
class SurfaceMeshConfig:
    """How the refined surface is parameterised."""

    offset_scale: float = 0.02
    """s: scene units a vertex moves along its normal per unit of its offset parameter. Adam
    moves a parameter about the learning rate per step, so a vertex moves about lr x s."""

    def __post_init__(self) -> None:
        if not self.offset_scale > 0.0:
            raise ValueError(f"offset_scale must be > 0, got {self.offset_scale}")


class SurfaceMesh(torch.nn.Module):
    """A closed triangle mesh with per-vertex normal offsets and an albedo grid (module doc)."""

    def __init__(
        self,
        vertices: torch.Tensor,
        faces: torch.Tensor,
        albedo_logits: torch.Tensor,
        grid_half: float | tuple[float, float, float],
        config: SurfaceMeshConfig = SurfaceMeshConfig(),
    ) -> None:
        """vertices [V, 3], faces [F, 3] (outward winding), albedo_logits [1, 3, r, r, r]
        (copied: the source is left as it is) spanning [-h, h] per axis, h = `grid_half` (one
        number, or one per axis when the surface lives in a frame scaled from the grid's, as a
        composed scene's object in object units)."""
        super().__init__()
        self.config = config
        half = torch.as_tensor(grid_half, dtype=torch.float32).expand(3).clone()
        self.register_buffer("grid_half", half.to(vertices.device))
        vertices = vertices.float()
        faces = faces.long().to(vertices.device)
        self.register_buffer("base_vertices", vertices.clone())
        self.register_buffer("base_normals", vertex_normals(vertices, faces))
        self.register_buffer("faces", faces)
        self.register_buffer("neighbours", face_neighbours(faces))
        self.register_buffer("edges", unique_edges(faces))
        self.offsets = torch.nn.Parameter(torch.zeros(len(vertices), device=vertices.device))
        self.albedo_grid = torch.nn.Parameter(albedo_logits.detach().clone().float())

    @property
    def bound(self) -> float:
        """Half the side of the cube that holds the albedo grid (its largest half extent)."""
        return float(self.grid_half.max())

    def vertices(self) -> torch.Tensor:
        """[V, 3] current positions v^0 + s d n^0."""
        step = self.config.offset_scale * self.offsets[:, None]
        return self.base_vertices + step * self.base_normals

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """a(x) in [0, 1]; [N, 3] -> [N, 3]."""
        return torch.sigmoid(sample_grid(self.albedo_grid, points / self.grid_half, 1.0))

    def laplacian(self, vertices: torch.Tensor) -> torch.Tensor:
        """Uniform Laplacian energy of `vertices` [V, 3] in units of the mean edge length."""
        i, j = self.edges[:, 0], self.edges[:, 1]
        total = torch.zeros_like(vertices)
        total = total.index_add(0, i, vertices[j]).index_add(0, j, vertices[i])
        degree = torch.zeros(len(vertices), device=vertices.device)
        ones = torch.ones(len(i), device=vertices.device)
        degree = degree.index_add(0, i, ones).index_add(0, j, ones).clamp(min=1.0)
        delta = vertices - total / degree[:, None]
        h = (vertices[i] - vertices[j]).norm(dim=-1).mean().detach()
        return delta.pow(2).sum(-1).mean() / h.pow(2)

    def normal_consistency(self, vertices: torch.Tensor, eps: float | None = None) -> torch.Tensor:
        """Normal consistency of `vertices` [V, 3]: the mean over shared edges of
        x = 1 - n_f . n_g, or with `eps` of the edge-preserving rho(x) = x / (x + eps)."""
        normals = F.normalize(face_normals(vertices, self.faces), dim=-1)
        f = torch.arange(len(self.faces), device=vertices.device)[:, None].expand(-1, 3)
        shared = self.neighbours > f  # each shared edge once
        g = self.neighbours[shared]
        x = 1.0 - (normals[f[shared]] * normals[g]).sum(-1)
        return (x if eps is None else x / (x + eps)).mean()
