"""Camera conventions and random sampling ranges."""

from __future__ import annotations

import torch

from backend.render.cameras import CameraSamplingConfig, camera_rays, orbit_cameras, sample_cameras


def test_azimuth_zero_is_blender_front_view():
    cam = orbit_cameras(
        torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([2.0]), torch.tensor([40.0])
    )
    assert torch.allclose(cam.position, torch.tensor([[0.0, -2.0, 0.0]]), atol=1e-6)
    rays = camera_rays(cam, 3, 3)
    centre = rays.directions[0, 1, 1]
    assert torch.allclose(centre, torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    # image up is world +Z, image right is world +X
    assert rays.directions[0, 0, 1, 2] > 0 and rays.directions[0, 1, 2, 0] > 0


def test_sampled_cameras_respect_the_ranges():
    cfg = CameraSamplingConfig()
    cams = sample_cameras(512, cfg, torch.Generator().manual_seed(0))
    assert cams.elevation.min() >= -10.0 and cams.elevation.max() <= 80.0
    assert (cams.elevation > 60.0).any(), "overhead views are drawn"
    assert cams.distance.min() >= 1.5 and cams.distance.max() <= 2.0
    fov = torch.rad2deg(cams.fovy)
    assert fov.min() >= 40.0 and fov.max() <= 70.0
    assert cams.azimuth.min() > -180.0 and cams.azimuth.max() <= 180.0
    # stratified: 4 cameras cover four 90-degree sectors
    four = sample_cameras(4, cfg, torch.Generator().manual_seed(1)).azimuth.sort().values
    gaps = four.diff()
    assert torch.allclose(gaps, torch.full_like(gaps, 90.0), atol=1e-3)
    # the light sits between 0.8 and 1.5 (plus jitter of the look-at point) from the centre
    light_distance = cams.light_position.norm(dim=-1)
    assert light_distance.min() > 0.6 and light_distance.max() < 1.7
