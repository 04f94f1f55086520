"""Initialise a dense grid field from a triangle mesh (shape-mode editing starts from the mesh).

1. Occupancy of the voxel centres by ray parity: along each axis, every column of voxel centres
   is a ray; the triangles it crosses (rasterised in the orthographic projection along that
   axis) are counted, and a centre is inside when an odd number of crossings lies below it. The
   three axes vote (2 of 3), which tolerates holes and non-manifold edges that spoil one axis.
   The column grid is shifted by a tiny irrational offset so no column runs exactly through an
   edge or a vertex (which would count a crossing twice).
2. Unsigned distance d to the surface, from a k-d tree of dense area-uniform surface samples;
   the signed distance is s = -d inside, +d outside. A mesh that is not closed (a sheet, an open
   box) has no inside to trust, so its solid is united with a shell of half-thickness
   `min_thickness` voxels: s <- min(s, d - t).
3. Raw density (before the field's softplus; the field's blob bias must be 0 and its density
   scale 1):

       raw(x) = clip(r_s - k * s(x) / h, r_out, r_in)

   with h the voxel spacing, k = `slope_per_voxel`, r_s = `surface_raw`: r_in deep inside,
   r_out (softplus ~ 0.007: empty, yet within the optimiser's reach, as generate's blob
   surroundings are) a voxel or so outside. The surface is the level set
   sigma = softplus(r_s) (`surface_density`), the iso-level shape-mode export uses, so the
   unedited parts of a mesh come back where they were.
4. Albedo logits = logit(colour of the nearest surface sample).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree

from backend.field.grid_field import DenseGridField, GridFieldConfig
from backend.geometry.triangle_raster import triangle_coverage

SurfaceColour = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(face ids [N], barycentric weights [N, 3]) -> colours [N, 3] in [0, 1]."""

_COLUMN_SHIFT = (math.sqrt(2) - 1.0) * 1e-3, (math.sqrt(3) - 1.0) * 1e-3
"""Offsets of the voxel columns, in voxels, for the parity rays (see module docstring)."""


@dataclass(frozen=True)
class MeshFieldConfig:
    """How a mesh becomes density and albedo."""

    inside_raw: float = 10.0
    """r_in: raw density deep inside (generate's start blob peaks at 10 too)."""
    outside_raw: float = -5.0
    """r_out: raw density away from the surface."""
    surface_raw: float = 3.0
    """r_s: raw density on the surface."""
    slope_per_voxel: float = 5.0
    """k: raw density drop per voxel of signed distance across the surface."""
    min_thickness_voxels: float = 1.0
    """Half-thickness, in voxels, of the shell that open meshes are united with."""
    sample_spacing_voxels: float = 0.5
    """Target spacing of the surface samples, in voxels (distance and colour accuracy)."""
    max_samples: int = 400_000
    """Most surface samples (memory and time bound)."""
    albedo_clip: float = 0.02
    """Colours are clipped to [clip, 1 - clip] before the logit (finite logits)."""


def surface_density(config: MeshFieldConfig) -> float:
    """sigma on the mesh surface, softplus(r_s): the iso-level that gives the mesh back."""
    return float(F.softplus(torch.tensor(config.surface_raw, dtype=torch.float64)))


def voxel_centres(config: GridFieldConfig) -> torch.Tensor:
    """[r, r, r, 3] (x, y, z) positions of a grid field's voxel centres, indexed (z, y, x) like
    its grids (align_corners: the end voxels sit on the cube's faces)."""
    axis = torch.linspace(-config.bound, config.bound, config.resolution, dtype=torch.float64)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def parity_occupancy(
    vertices: np.ndarray, faces: np.ndarray, config: GridFieldConfig
) -> np.ndarray:
    """[r, r, r] bool (z, y, x): voxel centres inside the mesh by 2-of-3 axis parity votes.

    vertices [V, 3] in the field's frame, faces [F, 3].
    """
    r, bound = config.resolution, config.bound
    spacing = 2.0 * bound / (r - 1)
    pixel = torch.from_numpy((vertices + bound) / spacing)  # [V, 3] in voxel units
    corners = pixel[torch.from_numpy(faces)]  # [F, 3 corners, 3 axes]
    votes = torch.zeros(r, r, r, dtype=torch.int64)  # (x, y, z)
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3
        crossings = torch.zeros(r * r, r + 1, dtype=torch.int64)  # [column (v, u), first voxel]
        for hits in triangle_coverage(
            corners[..., u] + _COLUMN_SHIFT[0],
            corners[..., v] + _COLUMN_SHIFT[1],
            r,
            r,
            tolerance=0.0,
        ):
            along = (hits.barycentric * corners[hits.triangles, :, axis]).sum(-1)
            # The crossing lies below voxel centres floor(along) + 1, ... along the axis.
            first = (along.floor().long() + 1).clamp(0, r)
            crossings.index_put_((hits.pixels, first), torch.ones_like(first), accumulate=True)
        odd = crossings[:, :r].cumsum(1) % 2 == 1  # [(v, u), along]
        order = (v, u, axis)
        votes += odd.view(r, r, r).permute(*[order.index(k) for k in range(3)]).long()
    return (votes >= 2).permute(2, 1, 0).numpy()


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, count: int, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-uniform random surface points -> (face ids [N], barycentric [N, 3], points [N, 3])."""
    corners = vertices[faces]
    areas = 0.5 * np.linalg.norm(
        np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
    )
    total = areas.sum()
    weights = areas / total if total > 0 else np.full(len(faces), 1.0 / len(faces))
    face_ids = generator.choice(len(faces), size=count, p=weights)
    # Uniform in a triangle: (1 - sqrt(a), sqrt(a) (1 - b), sqrt(a) b).
    a, b = np.sqrt(generator.random(count)), generator.random(count)
    barycentric = np.stack([1.0 - a, a * (1.0 - b), a * b], axis=1)
    points = np.einsum("nk,nkd->nd", barycentric, corners[face_ids])
    return face_ids, barycentric, points


def is_closed(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Whether the mesh, with coincident vertices merged (UV seams), is watertight."""
    return bool(trimesh.Trimesh(vertices=vertices, faces=faces, process=True).is_watertight)


def mesh_to_field(
    vertices: np.ndarray,
    faces: np.ndarray,
    colour: SurfaceColour,
    grid: GridFieldConfig,
    config: MeshFieldConfig = MeshFieldConfig(),
    seed: int = 0,
) -> DenseGridField:
    """A DenseGridField (blob bias off, density scale 1) whose density and albedo reproduce the
    mesh.

    vertices [V, 3] in the field's frame (inside [-bound, bound]^3), faces [F, 3]; `colour`
    gives the mesh's colour at surface samples. See the module docstring for the formulas.
    """
    field = DenseGridField(replace(grid, blob_density=0.0, density_scale=1.0))
    spacing = 2.0 * grid.bound / (grid.resolution - 1)
    centres = voxel_centres(grid).reshape(-1, 3).numpy()

    corners = vertices[faces]
    area = (
        0.5
        * np.linalg.norm(
            np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
        ).sum()
    )
    wanted = area / (config.sample_spacing_voxels * spacing) ** 2
    count = int(np.clip(wanted, len(faces), config.max_samples))
    face_ids, barycentric, points = sample_surface(
        vertices, faces, count, np.random.default_rng(seed)
    )
    # Distances matter only within the band where raw is not clipped; far queries are slow.
    reach = max(config.inside_raw - config.surface_raw, config.surface_raw - config.outside_raw)
    band = (reach / config.slope_per_voxel + config.min_thickness_voxels + 1.0) * spacing
    candidates = (
        (centres >= vertices.min(axis=0) - band) & (centres <= vertices.max(axis=0) + band)
    ).all(axis=1)
    distance = np.full(len(centres), band)
    nearest = np.zeros(len(centres), dtype=np.int64)
    found, index = cKDTree(points).query(centres[candidates], distance_upper_bound=band)
    distance[candidates] = np.minimum(found, band)
    nearest[candidates] = np.minimum(index, len(points) - 1)  # misses: index == len(points)
    near = distance < band

    occupied = parity_occupancy(vertices, faces, grid).reshape(-1)
    signed = np.where(occupied, -distance, distance)
    if not is_closed(vertices, faces):
        signed = np.minimum(signed, distance - config.min_thickness_voxels * spacing)
    raw = np.clip(
        config.surface_raw - config.slope_per_voxel * signed / spacing,
        config.outside_raw,
        config.inside_raw,
    )

    # Colour: of the nearest sample within the band, elsewhere of the nearest voxel in the band.
    r = grid.resolution
    sample_colours = colour(face_ids, barycentric)
    colours = np.zeros((r**3, 3), dtype=np.float32)
    colours[near] = sample_colours[nearest[near]]
    if near.any():
        _, source = ndimage.distance_transform_edt(~near.reshape(r, r, r), return_indices=True)
        colours = colours.reshape(r, r, r, 3)[tuple(source)].reshape(-1, 3)
    colours = np.clip(colours, config.albedo_clip, 1.0 - config.albedo_clip)
    with torch.no_grad():
        field.density_grid.copy_(torch.from_numpy(raw).float().view(1, 1, r, r, r))
        logits = torch.logit(torch.from_numpy(colours).float())  # [r^3, 3]
        field.albedo_grid.copy_(logits.t().reshape(1, 3, r, r, r))
    return field
