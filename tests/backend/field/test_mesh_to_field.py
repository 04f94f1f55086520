"""Mesh -> grid field: parity occupancy against analytic solids, robustness to holes and open
sheets, density and albedo of the initialised field, and its surface after export."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from backend.export.export_field import ExportConfig, export_field
from backend.export.marching import MarchingConfig
from backend.field.grid_field import GridFieldConfig
from backend.field.mesh_to_field import (
    MeshFieldConfig,
    mesh_to_field,
    parity_occupancy,
    surface_density,
    voxel_centres,
)

GRID = GridFieldConfig(resolution=40)
SPACING = 2.0 / (GRID.resolution - 1)
RED = np.array([0.85, 0.1, 0.1], dtype=np.float32)


def _centres() -> np.ndarray:
    return voxel_centres(GRID).reshape(-1, 3).numpy()


def _box_sdf(points: np.ndarray, half: np.ndarray) -> np.ndarray:
    q = np.abs(points) - half
    return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)


def _uniform(colour: np.ndarray):
    return lambda face_ids, barycentric: np.tile(colour, (len(face_ids), 1))


def test_voxel_centres_follow_the_grid_layout():
    centres = voxel_centres(GRID)
    field_axes = torch.linspace(-1, 1, GRID.resolution, dtype=torch.float64)
    assert torch.equal(centres[0, 0, :, 0], field_axes)  # x varies along the last axis
    assert torch.equal(centres[:, 0, 0, 2], field_axes)  # z along the first


def test_parity_occupancy_of_a_box_and_a_torus():
    centres = _centres()
    box = trimesh.creation.box((0.7, 0.5, 0.9))
    occupied = parity_occupancy(box.vertices, box.faces, GRID).reshape(-1)
    truth = (np.abs(centres) < np.array([0.35, 0.25, 0.45])).all(axis=1)
    assert np.array_equal(occupied, truth)

    torus = trimesh.creation.torus(0.5, 0.2, major_sections=64, minor_sections=32)
    occupied = parity_occupancy(torus.vertices, torus.faces, GRID).reshape(-1)
    tube = np.hypot(np.hypot(centres[:, 0], centres[:, 1]) - 0.5, centres[:, 2])
    clear = np.abs(tube - 0.2) > 0.02  # away from the (polygonal) surface
    assert np.array_equal(occupied[clear], tube[clear] < 0.2)
    assert not occupied[np.linalg.norm(centres, axis=1) < 0.2].any()  # the hole stays empty


def test_a_hole_in_one_side_is_outvoted():
    box = trimesh.creation.box((0.8, 0.8, 0.8))
    top = np.where(box.triangles_center[:, 2] > 0.39)[0][:1]
    faces = np.delete(box.faces, top, axis=0)
    occupied = parity_occupancy(box.vertices, faces, GRID).reshape(-1)
    assert np.array_equal(occupied, (np.abs(_centres()) < 0.4).all(axis=1))


def test_field_of_a_box_is_dense_inside_empty_outside_and_red():
    box = trimesh.creation.box((0.8, 0.8, 0.8))
    field = mesh_to_field(box.vertices, box.faces, _uniform(RED), GRID)
    assert field.config.blob_density == 0.0
    inside = torch.tensor([[0.0, 0.0, 0.0], [0.2, -0.2, 0.2]])
    outside = torch.tensor([[0.55, 0.0, 0.0], [0.0, 0.0, -0.9]])
    assert (field.density(inside) > 9.9).all()
    assert (field.density(outside) < 0.01).all()
    near_surface = torch.tensor([[0.4, 0.1, 0.0], [0.0, 0.6, 0.0]])
    colours = field.albedo(torch.cat([inside, near_surface]))
    assert torch.allclose(colours, torch.from_numpy(RED).expand(4, 3), atol=1e-4)


def test_exported_surface_lies_on_the_mesh():
    box = trimesh.creation.box((0.8, 0.6, 0.7))
    field = mesh_to_field(box.vertices, box.faces, _uniform(RED), GRID)
    mesh = export_field(
        field,
        ExportConfig(
            marching=MarchingConfig(
                coarse_resolution=32,
                fine_resolution=64,
                threshold=surface_density(MeshFieldConfig()),
            )
        ),
        face_budget=2000,
        texture_size=64,
    )
    distance = np.abs(_box_sdf(mesh.vertices, np.array([0.4, 0.3, 0.35])))
    assert distance.max() < 1.0 * SPACING
    assert np.abs(mesh.texture.mean(axis=(0, 1)) - RED * 255).max() < 3


def test_an_open_sheet_becomes_a_thin_slab():
    sheet_vertices = np.array(
        [[-0.5, -0.5, 0.01], [0.5, -0.5, 0.01], [0.5, 0.5, 0.01], [-0.5, 0.5, 0.01]]
    )
    sheet_faces = np.array([[0, 1, 2], [0, 2, 3]])
    field = mesh_to_field(sheet_vertices, sheet_faces, _uniform(RED), GRID)
    on_sheet = torch.tensor([[0.0, 0.0, 0.01], [0.3, -0.2, 0.01]])
    away = torch.tensor([[0.0, 0.0, 0.01 + 3 * SPACING], [0.0, 0.0, 0.01 - 3 * SPACING]])
    assert (field.density(on_sheet) > surface_density(MeshFieldConfig())).all()
    assert (field.density(away) < 0.02).all()
