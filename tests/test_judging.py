"""The judge of generated meshes: analytic meshes of each shape are named right, whatever their
turn about the vertical axis."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from tests.judging import nearest_shape


def _turned(mesh: trimesh.Trimesh, degrees: float) -> trimesh.Trimesh:
    return mesh.copy().apply_transform(
        trimesh.transformations.rotation_matrix(np.deg2rad(degrees), [0, 0, 1])
    )


SHAPES = {
    "cube": trimesh.creation.box((0.68, 0.68, 0.68)),
    "sphere": trimesh.creation.icosphere(subdivisions=3, radius=0.35),
    "cylinder": trimesh.creation.cylinder(radius=0.3, height=0.76, sections=48),
    "cone": trimesh.creation.cone(radius=0.35, height=0.7, sections=48),
    "torus": trimesh.creation.torus(major_radius=0.31, minor_radius=0.14),
}


@pytest.mark.parametrize("yaw", [0.0, 30.0, 45.0])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_analytic_meshes_are_named_right_at_any_yaw(shape, yaw):
    mesh = _turned(SHAPES[shape], yaw)
    found, features = nearest_shape(mesh.vertices, mesh.faces)
    assert found == shape, features.round(2)


def test_a_squashed_sphere_is_not_a_cube():
    """A sphere squashed into a box's extent (the failure SDS tends to) stays a sphere."""
    blob = trimesh.creation.icosphere(subdivisions=3, radius=0.35)
    blob.vertices *= np.array([1.0, 1.0, 0.9])
    assert nearest_shape(blob.vertices, blob.faces)[0] == "sphere"
