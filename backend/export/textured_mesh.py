"""The mesh BoxDream exports and reads back: geometry, UVs, texture, colours, transform."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.export.errors import MeshError


@dataclass(eq=False)
class TexturedMesh:
    """One named triangle mesh in BoxDream's frame (Blender's: right-handed, Z up, metres).

    glTF is Y up; `backend.export.glb` converts on write and on read, so these arrays are
    always Z up.
    """

    name: str
    """Object name (the glTF node name; Blender names the imported object after it)."""
    vertices: np.ndarray
    """[V, 3] float64 positions in the mesh's local frame."""
    faces: np.ndarray
    """[F, 3] int64 vertex indices, counter-clockwise seen from the front."""
    uvs: np.ndarray | None = None
    """[V, 2] float64 texture coordinates, OpenGL / Blender convention (u right, v up, origin
    bottom-left; image row 0 is v = 1). glTF stores v flipped; the reader flips it back."""
    texture: np.ndarray | None = None
    """[H, W, 3] uint8 base colour image, row 0 at the top (as in the PNG)."""
    vertex_colors: np.ndarray | None = None
    """[V, 4] uint8 RGBA per-vertex colours (glTF COLOR_0)."""
    base_color: tuple[float, float, float, float] | None = None
    """RGBA in [0, 1] of the material's baseColorFactor; glTF multiplies it with the texture
    (None: no factor, i.e. white)."""
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))
    """[4, 4] float64 local-to-world matrix (Z up)."""
    normals: np.ndarray | None = None
    """[V, 3] unit vertex normals, written as glTF NORMAL (None: viewers compute them)."""
    normal_texture: np.ndarray | None = None
    """[H, W, 3] uint8 tangent-space normal map (glTF normalTexture, `backend.export.
    normal_bake`); needs `uvs` and `normals`."""


def validate_mesh(mesh: TexturedMesh, max_faces: int | None = None) -> None:
    """Raise MeshError naming the first problem: empty geometry, bad shapes, NaN or infinite
    values, indices out of range, more than `max_faces` faces, arrays of the wrong size."""
    label = f"mesh {mesh.name!r}"
    vertices, faces = mesh.vertices, mesh.faces
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise MeshError(f"{label}: vertices must be [V, 3], got {vertices.shape}", "vertices")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise MeshError(f"{label}: faces must be [F, 3] triangles, got {faces.shape}", "faces")
    if len(vertices) == 0 or len(faces) == 0:
        raise MeshError(f"{label} is empty ({len(vertices)} vertices, {len(faces)} faces)", "faces")
    bad_vertices = int((~np.isfinite(vertices)).any(axis=1).sum())
    if bad_vertices:
        raise MeshError(f"{label}: {bad_vertices} vertices are NaN or infinite", "vertices")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(
            f"{label}: face indices must be in [0, {len(vertices) - 1}], "
            f"got [{faces.min()}, {faces.max()}]",
            "faces",
        )
    if max_faces is not None and len(faces) > max_faces:
        raise MeshError(f"{label} has {len(faces)} faces, the limit is {max_faces}", "faces")
    if mesh.uvs is not None:
        if mesh.uvs.shape != (len(vertices), 2):
            raise MeshError(
                f"{label}: uvs must be [{len(vertices)}, 2], got {mesh.uvs.shape}", "uvs"
            )
        if not np.isfinite(mesh.uvs).all():
            raise MeshError(f"{label}: uvs contain NaN or infinite values", "uvs")
    if mesh.texture is not None and (
        mesh.texture.ndim != 3 or mesh.texture.shape[2] != 3 or mesh.texture.dtype != np.uint8
    ):
        raise MeshError(
            f"{label}: texture must be [H, W, 3] uint8, got {mesh.texture.shape} "
            f"{mesh.texture.dtype}",
            "texture",
        )
    if mesh.vertex_colors is not None and mesh.vertex_colors.shape != (len(vertices), 4):
        raise MeshError(
            f"{label}: vertex_colors must be [{len(vertices)}, 4], got {mesh.vertex_colors.shape}",
            "vertex_colors",
        )
    if mesh.normals is not None and (
        mesh.normals.shape != (len(vertices), 3) or not np.isfinite(mesh.normals).all()
    ):
        raise MeshError(f"{label}: normals must be finite [{len(vertices)}, 3]", "normals")
    if mesh.normal_texture is not None and (
        mesh.uvs is None
        or mesh.normals is None
        or mesh.normal_texture.ndim != 3
        or mesh.normal_texture.shape[2] != 3
        or mesh.normal_texture.dtype != np.uint8
    ):
        raise MeshError(
            f"{label}: a normal texture must be [H, W, 3] uint8 on a mesh with uvs and normals",
            "normal_texture",
        )
    if mesh.transform.shape != (4, 4) or not np.isfinite(mesh.transform).all():
        raise MeshError(f"{label}: transform must be a finite 4x4 matrix", "transform")
