"""Region boxes: world-space inside tests, texel masks and frozen voxels."""

from __future__ import annotations

import numpy as np
import torch

from backend.export.texture_bake import texel_samples
from backend.field.grid_field import DenseGridField, GridFieldConfig
from backend.field.mesh_to_field import voxel_centres
from backend.pipelines.edit_region import FrozenVoxels, RegionBox, texel_region
from backend.pipelines.edit_source import UnitFrame
from tests.backend.pipelines.edit_meshes import uv_cube


def test_region_from_request_and_inside_test():
    assert RegionBox.from_request(None) is None
    box = RegionBox.from_request((0.0, -1.0, 2.0, 1.0, 1.0, 3.0))
    points = np.array([[0.5, 0.0, 2.5], [1.5, 0.0, 2.5], [0.5, 0.0, 1.9], [1.0, 1.0, 3.0]])
    assert box.contains(points).tolist() == [True, False, False, True]


def test_texel_region_maps_surface_points_to_world():
    cube = uv_cube(0.5)
    samples = texel_samples(cube.vertices, cube.faces, cube.uvs, 64)
    shift = np.eye(4)
    shift[:3, 3] = (10.0, 0.0, 0.0)  # local x > 0 is world x > 10
    region = texel_region(samples, (64, 64), shift, RegionBox.from_request((10, -9, -9, 11, 9, 9)))
    local_x = samples.points[:, 0]
    assert np.array_equal(region.editable[samples.rows, samples.cols], local_x >= 0.0)
    assert region.covered.sum() == len(samples.rows)
    gutters = region.with_gutters(2)
    assert not (gutters & region.covered & ~region.editable).any()  # never a covered outsider
    assert (gutters & ~region.covered).any()


def test_frozen_voxels_restore_exactly_the_outside():
    field = DenseGridField(GridFieldConfig(resolution=16, blob_density=0.0))
    with torch.no_grad():
        field.density_grid.normal_()
    frame = UnitFrame(centre=np.array([0.0, 0.0, 5.0]), scale=2.0)  # world = 2 p + (0, 0, 5)
    hook = FrozenVoxels(field, frame, RegionBox.from_request((-9.0, -9.0, 5.0, 9.0, 9.0, 9.0)))
    before_density = field.density_grid.detach().clone()
    before_albedo = field.albedo_grid.detach().clone()
    with torch.no_grad():
        field.density_grid.add_(1.0)
        field.albedo_grid.sub_(1.0)
    hook()
    upper = (voxel_centres(field.config)[..., 2] >= 0.0)[None, None]  # unit z >= 0: world z >= 5
    assert torch.equal(field.density_grid[~upper], before_density[~upper])
    assert torch.equal(field.density_grid[upper], before_density[upper] + 1.0)
    albedo_upper = upper.expand_as(field.albedo_grid)
    assert torch.equal(field.albedo_grid[~albedo_upper], before_albedo[~albedo_upper])
    assert torch.equal(field.albedo_grid[albedo_upper], before_albedo[albedo_upper] - 1.0)
