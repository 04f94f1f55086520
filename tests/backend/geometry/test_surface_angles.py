"""The neighbour-angle measure against analytic meshes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from backend.geometry.surface_angles import surface_angles, weighted_quantile
from tests.backend.pipelines.edit_meshes import uv_cube


def test_a_fine_sphere_is_smooth_and_a_coarse_one_less_so():
    fine = trimesh.creation.icosphere(subdivisions=5)
    coarse = trimesh.creation.icosphere(subdivisions=2)
    smooth = surface_angles(fine.vertices, fine.faces)
    rough = surface_angles(coarse.vertices, coarse.faces)
    assert 1.0 < smooth.median_deg < 1.6 and smooth.p90_deg < 1.6
    assert rough.median_deg > 4 * smooth.median_deg


def test_a_cube_split_along_uv_seams_is_measured_as_one_surface():
    cube = uv_cube(0.5)  # 24 vertices: every corner split three ways
    angles = surface_angles(cube.vertices, cube.faces)
    # 12 edges of 90 deg (length 1) and 6 face diagonals of 0 deg (length sqrt 2).
    assert angles.edges == 18
    assert angles.median_deg == pytest.approx(90.0) and angles.p90_deg == pytest.approx(90.0)


def test_weighted_quantile_follows_the_weights():
    values = np.array([0.0, 10.0])
    assert weighted_quantile(values, np.array([3.0, 1.0]), 0.5) == 0.0
    assert weighted_quantile(values, np.array([1.0, 3.0]), 0.5) == 10.0
    assert math.isclose(weighted_quantile(values, np.ones(2), 0.9), 10.0)
