"""Judging generated meshes by colour and shape, with references computed from analytic meshes
of the built-in world's own objects (never thresholds tuned to a result).

Shape: a feature vector (fill = volume / bounding-box volume, taper = upper / lower horizontal
extent, aspect = height / width, hole = a vertical ray through the centre misses the surface) is
compared with the same features of the exact objects the built-in model was trained on
(`backend.builtin_model.shapes`, meshed by marching cubes); the nearest reference names the shape.
Colour: the area-weighted median of the baked texture over the surface, named by the nearest
colour of the vocabulary.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import trimesh
from skimage.measure import marching_cubes

from backend.builtin_model import shapes, vocabulary
from backend.export.textured_mesh import TexturedMesh

PRIMITIVES = ("cube", "sphere", "cylinder", "cone", "torus")


def surface_colour(mesh: TexturedMesh, samples_per_face: int = 4, seed: int = 0) -> np.ndarray:
    """Area-weighted median RGB in [0, 1] of the texture over the surface."""
    rng = np.random.default_rng(seed)
    v, f = mesh.vertices, mesh.faces
    areas = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1) / 2
    bary = rng.dirichlet(np.ones(3), size=(len(f), samples_per_face))  # [F, S, 3]
    uv = np.einsum("fsk,fkc->fsc", bary, mesh.uvs[f])  # [F, S, 2]
    h, w = mesh.texture.shape[:2]
    cols = np.clip((uv[..., 0] * w).astype(int), 0, w - 1)
    rows = np.clip(((1.0 - uv[..., 1]) * h).astype(int), 0, h - 1)  # v up, row 0 on top
    colours = mesh.texture[rows, cols].reshape(-1, 3) / 255.0
    weights = np.repeat(areas, samples_per_face)
    order = np.argsort(colours, axis=0)
    median = []
    for c in range(3):
        cum = np.cumsum(weights[order[:, c]])
        median.append(colours[order[np.searchsorted(cum, cum[-1] / 2), c], c])
    return np.array(median)


def nearest_colour(rgb: np.ndarray) -> str:
    """Name of the vocabulary colour nearest to `rgb` after normalising brightness, so a dark
    red (lit, or baked darker) is still red; white is told apart by its low saturation."""

    def normalise(c: np.ndarray) -> np.ndarray:
        c = np.asarray(c, dtype=float)
        return c / max(c.max(), 1e-6)

    target = normalise(rgb)
    return min(
        vocabulary.COLOURS, key=lambda n: np.linalg.norm(normalise(vocabulary.COLOURS[n]) - target)
    )


def upright_yaw(vertices: np.ndarray) -> float:
    """The turn about Z (radians, in [0, pi/2)) whose axis-aligned box around the vertices has
    the least area in XY. Nothing fixes the yaw of a generated object (cameras orbit at every
    azimuth, and a cube's captions carry no view suffix), so a cube grown at 30 degrees is still
    a cube: its bounding box is taken in its own frame."""
    xy = vertices[:, :2] - vertices[:, :2].mean(0)
    angles = np.deg2rad(np.arange(0.0, 90.0, 1.0))
    c, s = np.cos(angles), np.sin(angles)
    x = xy[:, :1] * c + xy[:, 1:] * s  # [V, A]
    y = -xy[:, :1] * s + xy[:, 1:] * c
    area = (x.max(0) - x.min(0)) * (y.max(0) - y.min(0))
    return float(angles[np.argmin(area)])


def shape_features(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[fill, taper, aspect, hole] of a closed mesh (Z up), measured in its upright yaw."""
    yaw = upright_yaw(vertices)
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    mesh = trimesh.Trimesh(vertices @ turn.T, faces, process=True)
    lo, hi = mesh.bounds
    size = np.maximum(hi - lo, 1e-6)
    fill = abs(mesh.volume) / float(np.prod(size))
    points, _ = trimesh.sample.sample_surface(mesh, 4000, seed=0)
    z = points[:, 2]
    radial = np.linalg.norm(points[:, :2] - (lo[:2] + hi[:2]) / 2, axis=1)
    z_lo, z_hi = lo[2] + 0.2 * size[2], lo[2] + 0.8 * size[2]
    lower = radial[(z > lo[2] + 0.1 * size[2]) & (z < z_lo)]
    upper = radial[(z > z_hi) & (z < hi[2] - 0.1 * size[2])]
    taper = (
        (np.percentile(upper, 90) / np.percentile(lower, 90)) if len(upper) and len(lower) else 1.0
    )
    aspect = size[2] / max(size[0], size[1])
    return np.array(
        [fill, taper, aspect, 1.0 if _vertical_line_misses(mesh, (lo + hi) / 2) else 0.0]
    )


def _vertical_line_misses(mesh: trimesh.Trimesh, centre: np.ndarray) -> bool:
    """True when the vertical line through `centre` crosses no triangle (a through-hole)."""
    tri = mesh.triangles[:, :, :2] - centre[:2]  # [F, 3, 2], the line at the origin
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]

    def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]

    d1, d2, d3 = cross(a, b), cross(b, c), cross(c, a)
    inside = ((d1 >= 0) & (d2 >= 0) & (d3 >= 0)) | ((d1 <= 0) & (d2 <= 0) & (d3 <= 0))
    return not inside.any()


@functools.cache
def reference_features() -> dict[str, np.ndarray]:
    """Features of the analytic built-in objects (the training set's own shapes)."""
    n = 96
    axis = torch.linspace(-0.6, 0.6, n)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    out = {}
    for name in PRIMITIVES:
        parts = shapes.object_parts(name)
        sdf = torch.stack([p.sdf(grid) for p in parts], -1).min(-1).values.reshape(n, n, n)
        verts, faces, _, _ = marching_cubes(sdf.numpy(), 0.0, spacing=(1.2 / (n - 1),) * 3)
        out[name] = shape_features(verts - 0.6, faces[:, ::-1])
    return out


def nearest_shape(vertices: np.ndarray, faces: np.ndarray) -> tuple[str, np.ndarray]:
    """The primitive whose analytic features are nearest (scaled distance), and the features."""
    features = shape_features(vertices, faces)
    refs = reference_features()
    scale = np.array([1.0, 1.0, 0.5, 0.5])  # aspect and hole weigh half as much as fill and taper
    best = min(refs, key=lambda n: float(np.linalg.norm((refs[n] - features) * scale)))
    return best, features
