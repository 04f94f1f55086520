"""How bumpy a triangle surface is: the angles between the normals of neighbouring faces.

For every edge shared by two faces f, g with unit normals n_f, n_g, the angle
theta = arccos(n_f . n_g) in degrees, weighted by the shared edge's length l. A smooth surface
at a fine tessellation has small angles everywhere; marching cubes of a noisy density leaves
many angles of 5-25 deg. The measure reports the l-weighted median and 90th percentile
(an analytic sphere of 10k faces: about 1.4 and 2 deg; a cube's 90 deg edges lie above its
90th percentile because they are a small share of the edge length).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh


@dataclass(frozen=True)
class SurfaceAngles:
    """Edge-length-weighted statistics of the angles between neighbouring face normals."""

    median_deg: float
    """Weighted median angle, degrees."""
    p90_deg: float
    """Weighted 90th percentile, degrees."""
    edges: int
    """Shared edges measured."""


def neighbour_angles(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles (degrees) between the normals of the two faces of every shared edge, and the
    edge's length. vertices [V, 3], faces [F, 3] -> ([E], [E]); vertices are merged first, so a
    mesh split along UV seams is measured as the surface it is."""
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    mesh.update_faces(mesh.nondegenerate_faces())
    normals = mesh.face_normals
    pairs = mesh.face_adjacency  # [E, 2]
    cosine = np.clip((normals[pairs[:, 0]] * normals[pairs[:, 1]]).sum(-1), -1.0, 1.0)
    edges = mesh.vertices[mesh.face_adjacency_edges]  # [E, 2, 3]
    length = np.linalg.norm(edges[:, 1] - edges[:, 0], axis=-1)
    return np.degrees(np.arccos(cosine)), length


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose cumulative weight reaches q of the total (q in [0, 1])."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    index = int(np.searchsorted(cumulative, q * cumulative[-1]))
    return float(values[order[min(index, len(order) - 1)]])


def surface_angles(vertices: np.ndarray, faces: np.ndarray) -> SurfaceAngles:
    """The measure of the module docstring for one mesh; raises ValueError if no two faces
    share an edge."""
    angles, length = neighbour_angles(np.asarray(vertices), np.asarray(faces))
    if len(angles) == 0:
        raise ValueError("surface angles: the mesh has no edge shared by two faces")
    return SurfaceAngles(
        median_deg=weighted_quantile(angles, length, 0.5),
        p90_deg=weighted_quantile(angles, length, 0.9),
        edges=len(angles),
    )
