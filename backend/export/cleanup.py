"""Mesh cleanup after marching cubes: merge duplicates, drop floaters, orient normals outward."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh


@dataclass(frozen=True)
class CleanupConfig:
    """What counts as a floater."""

    min_component_fraction: float = 0.05
    """A connected component is kept only if its surface area is at least this fraction of the
    largest component's area (score distillation leaves small blobs of haze around objects)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_component_fraction <= 1.0:
            raise ValueError("min_component_fraction must be in [0, 1]")


def component_labels(mesh: trimesh.Trimesh) -> np.ndarray:
    """Connected component (through shared edges) of each face: [F] int64."""
    return trimesh.graph.connected_component_labels(
        mesh.face_adjacency, node_count=len(mesh.faces)
    ).astype(np.int64)


def clean_mesh(
    vertices: np.ndarray, faces: np.ndarray, config: CleanupConfig = CleanupConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Merge duplicate vertices, drop degenerate and duplicate faces, remove components smaller
    than `config.min_component_fraction` of the largest (by area), and wind every closed
    component so its normals point outward.

    vertices [V, 3], faces [F, 3] -> (vertices [V', 3] float64, faces [F', 3] int64).
    """
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    mesh.merge_vertices()
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())

    labels = component_labels(mesh)
    component_area = np.bincount(labels, weights=mesh.area_faces)
    keep = component_area[labels] >= config.min_component_fraction * component_area.max()
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()

    # Consistent winding inside each component, then each closed component turned so its
    # signed volume is positive (outward normals).
    trimesh.repair.fix_normals(mesh, multibody=True)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
