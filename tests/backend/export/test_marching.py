from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh
from export_shapes import SphereField

from backend.export.errors import MeshError
from backend.export.iso_level import auto_threshold
from backend.export.marching import MarchingConfig, marching_cubes, sample_grid


def test_sphere_is_closed_outward_and_has_the_right_radius(sphere_field):
    surface = marching_cubes(sphere_field.density, sphere_field.bound, MarchingConfig())
    distance = np.linalg.norm(surface.vertices, axis=1)
    assert abs(distance.mean() - 0.5) < 0.005
    mesh = trimesh.Trimesh(surface.vertices, surface.faces)
    assert mesh.is_watertight
    assert mesh.volume > 0  # outward normals
    # The fine box hugs the sphere: about its size plus the 10 % margin, not the whole cube.
    assert np.all(surface.box_max < 0.7) and np.all(surface.box_min > -0.7)
    assert np.all(surface.box_max > 0.5) and np.all(surface.box_min < -0.5)


def test_fine_box_follows_an_off_centre_object():
    field = SphereField(radius=0.2)
    field.centre = torch.tensor([0.5, -0.4, 0.3])
    surface = marching_cubes(field.density, field.bound, MarchingConfig(fine_resolution=48))
    centre = surface.vertices.mean(axis=0)
    assert np.allclose(centre, [0.5, -0.4, 0.3], atol=0.01)
    assert np.all(surface.box_max - surface.box_min < 0.6)


def test_auto_threshold_scales_with_the_field():
    # threestudio's start blob softplus(10 (1 - |x| / 0.5)); 3x the density, same surface.
    def blob(scale):
        return lambda p: scale * torch.nn.functional.softplus(10 * (1 - p.norm(dim=-1) / 0.5))

    config = MarchingConfig(coarse_resolution=32, fine_resolution=32, threshold="auto")
    radii = []
    for scale in (1.0, 3.0):
        surface = marching_cubes(blob(scale), 1.0, config)
        radii.append(np.linalg.norm(surface.vertices, axis=1).mean())
        assert 0.04 * 10 * scale < surface.threshold < 0.5 * 10 * scale
    assert radii[0] == pytest.approx(radii[1], abs=1e-3)
    assert 0.45 < radii[0] < 0.56


@pytest.mark.parametrize(("peak", "width"), [(50.0, 0.2), (200.0, 0.1), (10.0, 0.25)])
def test_silhouette_level_outlines_what_a_render_shows(peak, width):
    # A Gaussian blob sigma = k exp(-r^2 / 2w^2) is seen (opacity 1 - exp(-line integral)
    # above 0.5) out to rho = w sqrt(2 ln(k sqrt(2 pi) w / ln 2)): the mesh must have that
    # radius. threestudio's "auto" level misses it by 8-17 %, outward or inward.
    def blob(p):
        return peak * torch.exp(-p.pow(2).sum(-1) / (2 * width**2))

    seen = width * np.sqrt(2 * np.log(peak * np.sqrt(2 * np.pi) * width / np.log(2)))
    surface = marching_cubes(blob, 1.0, MarchingConfig())
    assert np.linalg.norm(surface.vertices, axis=1).mean() == pytest.approx(seen, rel=0.01)
    auto = marching_cubes(blob, 1.0, MarchingConfig(threshold="auto"))
    assert np.linalg.norm(auto.vertices, axis=1).mean() != pytest.approx(seen, rel=0.05)


def test_a_haze_no_ray_sees_falls_back_to_the_auto_level():
    # Density 0.3 in a ball of radius 0.5: no line integral reaches ln 2 (opacity 0.5).
    def haze(p):
        return 0.3 * torch.sigmoid((0.5 - p.norm(dim=-1)) / 0.02)

    config = MarchingConfig(32, 32)
    surface = marching_cubes(haze, 1.0, config)
    auto = marching_cubes(haze, 1.0, replace(config, threshold="auto"))
    assert surface.threshold == auto.threshold


def test_auto_threshold_is_the_clipped_mean_of_occupied_values():
    values = np.array([0.0, 0.0, 2.0, 4.0, 6.0])
    assert auto_threshold(values, 1e-5, (0.05, 0.9)) == pytest.approx(4.0)
    assert auto_threshold(values, 1e-5, (0.05, 0.5)) == pytest.approx(3.0)
    assert auto_threshold(values, 1e-5, (0.8, 0.9)) == pytest.approx(4.8)


def test_object_touching_the_cube_is_still_closed():
    field = SphereField(radius=1.3)  # pokes through every face of [-1, 1]^3
    surface = marching_cubes(field.density, 1.0, MarchingConfig(32, 32))
    assert trimesh.Trimesh(surface.vertices, surface.faces).is_watertight
    assert np.abs(surface.vertices).max() == pytest.approx(1.0, abs=0.07)


def test_fixed_threshold_moves_the_surface():
    field = SphereField(softness=0.05)
    low = marching_cubes(field.density, 1.0, MarchingConfig(32, 48, threshold=2.0))
    high = marching_cubes(field.density, 1.0, MarchingConfig(32, 48, threshold=18.0))
    assert low.threshold == 2.0
    assert (
        np.linalg.norm(low.vertices, axis=1).mean()
        > np.linalg.norm(high.vertices, axis=1).mean() + 0.1
    )


def test_empty_field_and_unreachable_threshold_raise_mesh_error():
    with pytest.raises(MeshError, match="empty") as caught:
        marching_cubes(lambda p: torch.zeros(len(p)), 1.0, MarchingConfig(16, 16))
    assert caught.value.field == "density"
    with pytest.raises(MeshError, match="threshold"):
        marching_cubes(SphereField().density, 1.0, MarchingConfig(16, 16, threshold=100.0))
    with pytest.raises(MeshError, match="NaN"):
        marching_cubes(lambda p: torch.full((len(p),), float("nan")), 1.0, MarchingConfig(8, 8))


def test_sample_grid_is_chunked_and_ordered_x_y_z():
    grid = sample_grid(
        lambda p: p[:, 0] + 10 * p[:, 1] + 100 * p[:, 2],
        np.zeros(3),
        np.array([1.0, 2.0, 3.0]),
        (2, 3, 4),
        chunk_size=5,
    )
    assert grid.shape == (2, 3, 4)
    assert grid[1, 0, 0] == pytest.approx(1.0)
    assert grid[0, 2, 0] == pytest.approx(20.0)
    assert grid[0, 0, 3] == pytest.approx(300.0)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        MarchingConfig(threshold=-1.0)
    with pytest.raises(ValueError):
        MarchingConfig(auto_clip=(0.5, 0.1))
    with pytest.raises(ValueError, match="silhouette_search"):
        MarchingConfig(silhouette_search=(0.5, 0.5))
    with pytest.raises(ValueError, match="silhouette"):
        MarchingConfig(threshold="mean")
