"""Stage 2 of a shape edit on the artist's own mesh (Magic3D's prompt-based editing fine-tunes
the refined mesh): the input mesh, its vertices welded where UV seams split them, is moved
onto the edited field's surface along its vertex normals, then refined as generate's stage 2
(`backend.pipelines.refine`) under the edit prompt; the result keeps the input's vertex count,
faces and UV layout, with its texture baked anew through those UVs.

It applies where the mesh can carry it: one part, with UVs, closed after welding (every edge
between two faces). Otherwise the edit is exported from the field as before
(`shape_edit`), with a warning that says why.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch

from backend.export.texture_bake import bake_texture
from backend.export.textured_mesh import TexturedMesh
from backend.field.grid_field import DenseGridField
from backend.field.surface_mesh import SurfaceMesh
from backend.geometry.mesh_topology import face_neighbours, vertex_normals
from backend.pipelines.distill_loop import LoopState
from backend.pipelines.mesh_edit import MeshEdit
from backend.pipelines.prompt_guidance import prompt_view_sampler
from backend.pipelines.refine import refine_surface
from protocol.messages import Preview, Progress

SNAP_REACH = 0.2
"""How far (unit-frame units, the field's cube is [-1, 1]^3) a vertex looks along its normal
for the edited surface."""
SNAP_SAMPLES = 41
"""Density samples along that reach."""


@dataclass(frozen=True, eq=False)
class WeldedMesh:
    """A part's mesh with the vertices that share a position merged."""

    vertices: np.ndarray
    """[W, 3] merged positions (unit frame)."""
    faces: np.ndarray
    """[F, 3] faces over the merged vertices."""
    merged: np.ndarray
    """[V] the merged vertex of each input vertex."""


def weld(vertices: np.ndarray, faces: np.ndarray) -> WeldedMesh:
    """Merge vertices at the same position (to 1e-9): UV seams split a surface's vertices."""
    unique, merged = np.unique(np.round(vertices, 9), axis=0, return_inverse=True)
    return WeldedMesh(unique, merged.reshape(-1)[faces], merged.reshape(-1))


def why_not_refinable(edit: MeshEdit) -> str | None:
    """None when stage 2 can run on the artist's mesh, else the reason it cannot."""
    parts = edit.source.parts
    if len(parts) != 1:
        return f"it has {len(parts)} parts (the mesh stage takes one)"
    if parts[0].uvs is None:
        return "it has no UVs to keep"
    welded = weld(parts[0].vertices, parts[0].faces)
    if (face_neighbours(torch.from_numpy(welded.faces)) < 0).any():
        return "it is not closed (an edge without a second face)"
    return None


def snap_to_surface(
    vertices: torch.Tensor, normals: torch.Tensor, field: DenseGridField, level: float
) -> torch.Tensor:
    """Move each vertex [V, 3] along its unit normal [V, 3] to the nearest point within
    `SNAP_REACH` where the field's density crosses `level` (linear between samples); vertices
    with no crossing in reach stay."""
    t = torch.linspace(-SNAP_REACH, SNAP_REACH, SNAP_SAMPLES)
    with torch.no_grad():
        points = vertices[:, None] + t[None, :, None] * normals[:, None]
        inside = field.density(points.reshape(-1, 3)).view(len(vertices), -1) - level
        crossing = (inside[:, :-1] > 0) != (inside[:, 1:] > 0)  # [V, S-1]
        a, b = inside[:, :-1], inside[:, 1:]
        where = t[:-1] + (t[1:] - t[:-1]) * a / torch.where(crossing, a - b, 1.0)
        distance = torch.where(crossing, where.abs(), torch.inf)
        nearest = distance.argmin(-1)
        found = torch.isfinite(distance.gather(1, nearest[:, None]))[:, 0]
        step = torch.where(found, where.gather(1, nearest[:, None])[:, 0], 0.0)
    return vertices + step[:, None] * normals


def refine_artist_mesh(
    edit: MeshEdit,
    field: DenseGridField,
    level: float,
    stage: str,
    should_cancel: Callable[[], bool],
    state: LoopState | None = None,
) -> Generator[Progress | Preview, None, TexturedMesh]:
    """Stage 2 on the artist's mesh (module docstring; `why_not_refinable` must be None):
    yields the stage's events and returns the part with new positions (unit frame), its faces
    and UVs, and a texture baked from the refined colour."""
    part = edit.source.parts[0]
    config = edit.config
    welded = weld(edit.source.part_to_unit(0, part.vertices), part.faces)
    device = field.albedo_grid.device
    vertices = torch.from_numpy(welded.vertices).float().to(device)
    faces = torch.from_numpy(welded.faces).to(device)
    start = snap_to_surface(vertices, vertex_normals(vertices, faces), field, level)
    surface = SurfaceMesh(start, faces, field.albedo_grid, field.bound, config.refine.mesh)
    region = None
    if edit.region is not None:
        world = edit.source.frame.to_world(welded.vertices)
        region = torch.from_numpy(~edit.region.contains(world)).to(device)
        with torch.no_grad():
            surface.base_vertices[region] = vertices[region]

    def keep_outside() -> None:
        if region is not None:
            with torch.no_grad():
                surface.offsets[region] = 0.0

    yield from refine_surface(
        surface,
        edit.prior,
        edit.method,
        config,
        lambda stage_config: prompt_view_sampler(edit.prior, edit.embeddings, stage_config),
        edit.generator,
        should_cancel,
        state,
        stage=stage,
        after_step=keep_outside,
    )
    with torch.no_grad():
        moved = surface.vertices().cpu().double().numpy()[welded.merged]

        def albedo(points: torch.Tensor) -> torch.Tensor:
            return surface.albedo(points.to(device)).cpu()

    size = part.texture.shape[:2] if part.texture is not None else config.texture_size
    baked = bake_texture(moved, part.faces, part.uvs, albedo, size)
    texture = np.round(baked.image * 255.0).astype(np.uint8)
    return TexturedMesh(
        name=edit.source.result_name(0),
        vertices=moved,
        faces=part.faces,
        uvs=part.uvs,
        texture=texture,
    )
