"""The meshes of an edit request, read and placed: GLB parts in their local frames, the world
transform, the unit frame the optimisation works in, and the colour of any surface point.

Frames (all Z up):

    part-local --(part.transform, the GLB node's matrix)--> mesh-local
    mesh-local --(MeshInput.transform)--> world
    world --(minus centre, divided by scale)--> unit frame

The unit frame is world-aligned (cameras orbit world Z, as the prior expects objects upright)
and scaled so the largest half-extent of the mesh's world bounding box is `object_radius`, the
size of generate's objects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from backend.export.errors import MeshError
from backend.export.glb import read_glb, write_glb
from backend.export.textured_mesh import TexturedMesh
from backend.render.mesh_texture_renderer import sample_texture
from protocol.errors import ErrorCode, ProtocolError
from protocol.fields import join
from protocol.limits import Limits
from protocol.messages import DEFAULT_LIMITS, EditRequest

OBJECT_RADIUS = 0.4
"""Half of the largest world extent of a mesh in the unit frame (the built-in model's objects
have half-extents ~0.34-0.45 in the same camera rig)."""

DEFAULT_ALBEDO = (0.8, 0.8, 0.8)
"""Colour of a mesh with no texture, vertex colours or base colour (Blender's default grey)."""

MIN_EXTENT = 1e-9
"""A mesh whose world bounding box is smaller than this (metres) on every axis is degenerate."""


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine matrix to [N, 3] points."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


@dataclass(frozen=True)
class UnitFrame:
    """world point p <-> unit-frame point (p - centre) / scale."""

    centre: np.ndarray
    """[3] world centre of the mesh's bounding box."""
    scale: float
    """World metres per unit-frame unit."""

    def to_unit(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] world -> [N, 3] unit frame."""
        return (points - self.centre) / self.scale

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] unit frame -> [N, 3] world."""
        return points * self.scale + self.centre


@dataclass(frozen=True, eq=False)
class EditSource:
    """One input mesh of the request: its parts (one per GLB node primitive) as read, exactly."""

    index: int
    """Position in `EditRequest.meshes` (for error fields)."""
    name: str
    """The MeshInput's name; the result mesh keeps it."""
    parts: list[TexturedMesh]
    """The GLB's meshes, vertices and faces untouched (Z up, part-local frames)."""
    world: np.ndarray
    """[4, 4] mesh-local -> world (MeshInput.transform)."""
    frame: UnitFrame
    """world <-> unit frame of the optimisation."""

    @property
    def field(self) -> str:
        """The request field this mesh came from, for errors: "meshes[i].glb"."""
        return join(join("meshes", self.index), "glb")

    def part_to_world(self, part: int) -> np.ndarray:
        """[4, 4] part-local -> world."""
        return self.world @ self.parts[part].transform

    def part_to_unit(self, part: int, points: np.ndarray) -> np.ndarray:
        """[N, 3] part-local points -> unit frame."""
        return self.frame.to_unit(transform_points(self.part_to_world(part), points))

    def result_name(self, part: int) -> str:
        """Name of a part in the result GLB: a sole part takes the mesh's name."""
        return self.name if len(self.parts) == 1 else self.parts[part].name

    def unchanged_glb(self) -> bytes:
        """The parts written back as read (sole part renamed after the mesh)."""
        return write_glb(
            [replace(part, name=self.result_name(i)) for i, part in enumerate(self.parts)]
        )


def bad_mesh(field: str, message: str) -> ProtocolError:
    """The error of an input mesh the pipeline cannot use."""
    return ProtocolError(ErrorCode.BAD_MESH, field, f"{field}: {message}")


def read_sources(request: EditRequest, limits: Limits = DEFAULT_LIMITS) -> list[EditSource]:
    """Read every input GLB (exact vertex and face order; triangle strips become triangles).

    Raises ProtocolError(BAD_MESH, "meshes[i].glb") for unreadable or empty GLBs, NaN or
    infinite vertices, more faces than `limits.max_faces`, and meshes that are a point in world
    space (e.g. a zero scale).
    """
    sources = []
    for index, mesh_input in enumerate(request.meshes):
        field = join(join("meshes", index), "glb")
        try:
            parts = read_glb(mesh_input.glb, max_faces=limits.max_faces)
        except MeshError as error:
            raise bad_mesh(field, str(error)) from error
        world = np.asarray(mesh_input.transform, dtype=np.float64).reshape(4, 4)
        points = np.concatenate(
            [transform_points(world @ part.transform, part.vertices) for part in parts]
        )
        if not np.isfinite(points).all():
            raise bad_mesh(field, "the world transform makes vertices infinite")
        lo, hi = points.min(axis=0), points.max(axis=0)
        half_extent = float((hi - lo).max()) / 2.0
        if half_extent < MIN_EXTENT:
            raise bad_mesh(field, "the mesh has no size in world space (all vertices coincide)")
        frame = UnitFrame(centre=(lo + hi) / 2.0, scale=half_extent / OBJECT_RADIUS)
        sources.append(EditSource(index, mesh_input.name, parts, world, frame))
    return sources


def surface_colour(mesh: TexturedMesh, face_ids: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
    """The base colour the mesh shows at surface points given by face [N] and barycentric
    weights [N, 3] -> [N, 3] float32 in [0, 1].

    Source, first found: the texture at the interpolated UV (bilinear, wrapped; needs UVs),
    the interpolated vertex colours, the base colour factor, DEFAULT_ALBEDO. The texture and
    the vertex colours are multiplied by the base colour factor, as glTF does. Values are used
    as stored (no sRGB conversion), like the exporter writes them.
    """
    corners = mesh.faces[face_ids]  # [N, 3]
    factor = np.ones(3) if mesh.base_color is None else np.asarray(mesh.base_color[:3])
    if mesh.texture is not None and mesh.uvs is not None:
        uv = np.einsum("nk,nkd->nd", barycentric, mesh.uvs[corners])
        texture = torch.tensor(mesh.texture).permute(2, 0, 1).float() / 255.0
        colour = sample_texture(texture, torch.from_numpy(uv).float()).numpy() * factor
    elif mesh.vertex_colors is not None:
        rgb = mesh.vertex_colors[:, :3].astype(np.float64) / 255.0
        colour = np.einsum("nk,nkd->nd", barycentric, rgb[corners]) * factor
    elif mesh.base_color is not None:
        colour = np.broadcast_to(factor, (len(face_ids), 3))
    else:
        colour = np.broadcast_to(np.asarray(DEFAULT_ALBEDO), (len(face_ids), 3))
    return np.clip(colour, 0.0, 1.0).astype(np.float32)
