import numpy as np
import pytest
import trimesh

from backend.export.decimate import decimate


def test_decimation_meets_the_budget_and_keeps_the_shape():
    sphere = trimesh.creation.icosphere(subdivisions=5)  # 20,480 faces
    vertices, faces = decimate(sphere.vertices, sphere.faces, face_budget=1000)
    assert 900 <= len(faces) <= 1000
    assert np.abs(np.linalg.norm(vertices, axis=1) - 1.0).max() < 0.05
    assert trimesh.Trimesh(vertices, faces).is_watertight


def test_mesh_within_budget_is_unchanged():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices, faces = decimate(sphere.vertices, sphere.faces, face_budget=10_000)
    assert np.array_equal(vertices, sphere.vertices)
    assert np.array_equal(faces, sphere.faces)


def test_tiny_budget_is_rejected():
    sphere = trimesh.creation.icosphere(subdivisions=1)
    with pytest.raises(ValueError):
        decimate(sphere.vertices, sphere.faces, face_budget=2)
