"""A tangent-space normal map (glTF `normalTexture`) baked from a detailed surface onto the
exported (decimated) mesh, so the detail the export's face budget removes still shades.

Per exported vertex, the frame glTF viewers rebuild when a mesh has no TANGENT attribute
(MikkTSpace, approximated by its per-vertex sum): the normal N (area-weighted, over vertices
welded across UV seams so seams shade alike), the tangent T along +u and the bitangent B along
+v (OpenGL / Blender v up, which is glTF's "+Y up" of the normal texture), from each face's
UV derivatives,

    [T B] = [e1 e2] [du1 du2; dv1 dv2]^-1,   T <- normalise(T - (T . N) N),  w = sign((N x T) . B).

Per covered texel: the point p and interpolated frame (T, B = w N x T, N) on the exported mesh,
the detailed surface's normal n near p (its nearest vertices' normals), and the texel
rgb = (T . n, B . n, N . n) / 2 + 1/2. Gutters are filled as the base colour's are; uncovered
texels hold the flat normal (1/2, 1/2, 1).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from backend.export.texture_bake import fill_gutters, texel_samples

NEIGHBOURS = 3
"""Vertices of the detailed surface whose normals make the normal at a texel's point."""
FLAT = np.array([0.5, 0.5, 1.0], dtype=np.float32)
"""The texel of an unchanged normal."""


def welded_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[V, 3] unit area-weighted vertex normals, equal for vertices at the same position."""
    unique, merged = np.unique(np.round(vertices, 9), axis=0, return_inverse=True)
    merged = merged.reshape(-1)
    welded = merged[faces]
    v = unique[welded]
    area_normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])  # length: twice the area
    summed = np.zeros_like(unique)
    for k in range(3):
        np.add.at(summed, welded[:, k], area_normals)
    length = np.linalg.norm(summed, axis=-1, keepdims=True)
    # A vertex on degenerate faces only has no normal of its own: +Z keeps NORMAL unit length.
    normals = np.where(length > 1e-20, summed / np.maximum(length, 1e-20), [[0.0, 0.0, 1.0]])
    return normals[merged]


def vertex_tangents(
    vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, normals: np.ndarray
) -> np.ndarray:
    """[V, 4] unit tangents along +u orthogonal to `normals`, w = +-1 the handedness of the
    bitangent along +v (the module docstring's frame)."""
    v = vertices[faces]  # [F, 3, 3]
    t = uvs[faces]  # [F, 3, 2]
    e1, e2 = v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.where(np.abs(det) > 1e-20, 1.0 / np.where(det == 0, 1.0, det), 0.0)[:, None]
    tangent = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    bitangent = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    t_sum = np.zeros_like(vertices)
    b_sum = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(t_sum, faces[:, k], tangent)
        np.add.at(b_sum, faces[:, k], bitangent)
    t_sum -= (t_sum * normals).sum(-1, keepdims=True) * normals
    length = np.linalg.norm(t_sum, axis=-1, keepdims=True)
    # A vertex with no usable UV derivative gets any unit vector orthogonal to its normal.
    fallback = np.cross(normals, np.where(np.abs(normals[:, :1]) < 0.9, [[1, 0, 0]], [[0, 1, 0]]))
    t_sum = np.where(length > 1e-12, t_sum / np.maximum(length, 1e-12), fallback)
    t_sum /= np.linalg.norm(t_sum, axis=-1, keepdims=True)
    w = np.where((np.cross(normals, t_sum) * b_sum).sum(-1) < 0, -1.0, 1.0)
    return np.concatenate([t_sum, w[:, None]], -1)


def bake_normal_map(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    normals: np.ndarray,
    detail_vertices: np.ndarray,
    detail_faces: np.ndarray,
    size: int | tuple[int, int],
    padding: int = 4,
) -> np.ndarray:
    """The tangent-space normal map of the detailed surface (detail_vertices [D, 3],
    detail_faces [G, 3]) on the exported mesh (vertices [V, 3], faces [F, 3], uvs [V, 2],
    normals [V, 3], as written to the GLB) -> uint8 [H, W, 3]."""
    tangents = vertex_tangents(vertices, faces, uvs, normals)
    samples = texel_samples(vertices, faces, uvs, size)
    corners = faces[samples.face_ids]  # [T, 3]
    b = samples.barycentric[..., None]

    def interpolate(values: np.ndarray) -> np.ndarray:
        out = (b * values[corners]).sum(1)
        return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)

    n_frame = interpolate(normals)
    t_frame = interpolate(tangents[:, :3])
    t_frame = t_frame - (t_frame * n_frame).sum(-1, keepdims=True) * n_frame
    t_frame /= np.maximum(np.linalg.norm(t_frame, axis=-1, keepdims=True), 1e-12)
    b_frame = np.cross(n_frame, t_frame) * tangents[corners[:, 0], 3:4]

    # The detailed surface's normal near p: its NEIGHBOURS nearest vertices' normals, weighted
    # by inverse distance (the detail is finer than the texels' spacing on the export).
    detail_normals = welded_normals(detail_vertices, detail_faces)
    distance, index = cKDTree(detail_vertices).query(samples.points, k=NEIGHBOURS)
    weights = 1.0 / np.maximum(distance, 1e-9)
    n = (weights[..., None] * detail_normals[index]).sum(1)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    local = np.stack([(t_frame * n).sum(-1), (b_frame * n).sum(-1), (n_frame * n).sum(-1)], -1)
    height, width = (size, size) if isinstance(size, int) else size
    image = np.tile(FLAT, (height, width, 1))
    mask = np.zeros((height, width), dtype=bool)
    image[samples.rows, samples.cols] = np.clip(local * 0.5 + 0.5, 0.0, 1.0)
    mask[samples.rows, samples.cols] = True
    filled = fill_gutters(image, mask, padding)
    return np.round(filled * 255.0).astype(np.uint8)
