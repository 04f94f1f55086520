"""The composed scene field: boxes own their density, merging rules, frames and units."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from backend.field.composed_field import (
    VIEW_HALF_EXTENT,
    ComposedField,
    SceneFrame,
    object_grid,
)
from backend.field.grid_field import GridFieldConfig
from backend.geometry.oriented_box import OrientedBox
from backend.render.cameras import orbit_cameras
from backend.render.renderer import RenderConfig, render
from backend.render.shading import ShadingMode

GRID = GridFieldConfig(resolution=16, blob_radius=0.7)
LEFT = OrientedBox(centre=(-0.25, 0.05, 0.0), half_size=(0.2, 0.12, 0.15), yaw_deg=30.0)
RIGHT = OrientedBox(centre=(0.25, -0.05, 0.05), half_size=(0.1, 0.2, 0.1), yaw_deg=-70.0)


def random_grids(scene: ComposedField, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in scene.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator))


def scene_points(n: int = 4000, seed: int = 1) -> torch.Tensor:
    return (torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * 0.5


def test_density_outside_every_box_is_zero_and_inside_is_the_objects():
    scene = ComposedField([LEFT, RIGHT], GRID)
    random_grids(scene)
    points = scene_points()
    in_left, in_right = LEFT.contains(points), RIGHT.contains(points)
    assert in_left.any() and in_right.any() and not (in_left & in_right).any()
    density = scene.density(points)
    samples = scene(points)
    torch.testing.assert_close(samples.density, density)
    outside = ~(in_left | in_right)
    assert outside.sum() > 1000 and (density[outside] == 0).all()
    left = scene.objects[0]
    expected = left.field.density(left.field_points(points[in_left])) * left.unit
    torch.testing.assert_close(density[in_left], expected)
    assert (density[in_left] > 0).all()


def test_overlap_adds_densities_weights_albedo_and_takes_the_denser_normal():
    box = OrientedBox(centre=(0.0, 0.0, 0.0), half_size=(0.3, 0.3, 0.3), yaw_deg=0.0)
    scene = ComposedField([box, box], GRID)
    random_grids(scene)
    points = scene_points(500) * 0.5
    a, b = (obj.field(obj.field_points(points)) for obj in scene.objects)
    unit = scene.objects[0].unit
    merged = scene(points)
    torch.testing.assert_close(merged.density, (a.density + b.density) * unit)
    weighted = (a.density[:, None] * a.albedo + b.density[:, None] * b.albedo) / (
        a.density + b.density
    )[:, None]
    torch.testing.assert_close(merged.albedo, weighted)
    denser = (b.density > a.density)[:, None]
    torch.testing.assert_close(merged.normal, torch.where(denser, b.normal, a.normal))


def test_scene_normals_are_minus_the_density_gradient():
    # Blob only (zero grid): the field's normals are exact, so they must match the numerical
    # gradient of the scene density through the anisotropic, turned box.
    scene = ComposedField([LEFT], GRID)
    obj = scene.objects[0]
    unit_points = (torch.rand(200, 3, generator=torch.Generator().manual_seed(2)) * 2 - 1) * 0.6
    points = obj.box.vectors_to_parent(unit_points * torch.tensor(LEFT.half_size)) + torch.tensor(
        LEFT.centre
    )
    points = points.double().requires_grad_(True)
    scene.double()
    density = scene.density(points)
    (gradient,) = torch.autograd.grad(density.sum(), points)
    expected = -torch.nn.functional.normalize(gradient, dim=-1)
    cosine = (scene(points).normal * expected).sum(dim=-1)
    assert cosine.min() > 0.999


def test_object_view_renders_like_the_object_in_the_scene():
    # The same camera in object units and in the scene frame sees the same image: the object
    # view's density is per object unit, the scene's per scene unit (times `unit`).
    scene = ComposedField([LEFT], GRID)
    random_grids(scene)
    obj = scene.objects[0]
    view = obj.view()
    one = torch.ones(1)
    object_camera = orbit_cameras(20 * one, 35 * one, 1.6 * one, 50 * one)
    scene_camera = orbit_cameras(20 * one, 35 * one, 1.6 * one, 50 * one)
    # object units -> scene frame: x = R (p / unit) + centre
    to_scene = torch.eye(4)
    to_scene[:3, :3] = obj.box.rotation().float() / obj.unit
    to_scene[:3, 3] = torch.tensor(LEFT.centre)
    c2w = to_scene @ object_camera.c2w[0]
    c2w[:3, :3] = c2w[:3, :3] * obj.unit  # keep the camera axes orthonormal
    scene_camera.c2w = c2w[None]
    scene_camera.light_position = (to_scene @ torch.cat([object_camera.light_position[0], one]))[
        None, :3
    ]
    samples = RenderConfig(coarse_samples=256, fine_samples=0)
    args = (16, 16, torch.tensor([int(ShadingMode.LIT)]), torch.full((1, 3), 0.5), samples)
    with torch.no_grad():
        from_object = render(view, object_camera, *args)
        from_scene = render(scene, scene_camera, *args)
    assert from_object.opacity.mean() > 0.05
    torch.testing.assert_close(from_object.opacity, from_scene.opacity, atol=0.03, rtol=0.0)
    torch.testing.assert_close(from_object.rgb, from_scene.rgb, atol=0.03, rtol=0.0)


def test_scene_frame_centres_and_scales_the_boxes():
    world = [
        OrientedBox(centre=(3.0, 1.0, 0.5), half_size=(0.5, 0.5, 0.5), yaw_deg=0.0),
        OrientedBox(centre=(5.0, 1.0, 0.5), half_size=(0.5, 1.0, 0.5), yaw_deg=90.0),
    ]
    frame = SceneFrame.around(world)
    # Bounding box x in [2.5, 6.0], y in [0.5, 1.5], z in [0, 1]: centre (4.25, 1, 0.5),
    # largest half-extent 1.75 m -> 3.5 m per scene unit.
    assert frame.origin == (4.25, 1.0, 0.5)
    assert math.isclose(frame.metres_per_unit, 1.75 / VIEW_HALF_EXTENT)
    scene = ComposedField([frame.box_in_scene(box) for box in world], GRID)
    assert math.isclose(scene.bound, VIEW_HALF_EXTENT)
    assert scene.objects[1].box.half_size == (0.5 / 3.5, 1.0 / 3.5, 0.5 / 3.5)


def test_background_starts_empty_and_stays_out_of_the_boxes():
    scene = ComposedField([LEFT, RIGHT], GRID, background_grid=GridFieldConfig(resolution=16))
    assert scene.bound == 1.0
    points = scene_points(2000) * 2
    assert scene.background_view().density(points).max() < 0.05
    random_grids(scene)
    background = scene.background_view().density(points)
    inside = LEFT.contains(points) | RIGHT.contains(points)
    assert (background[inside] == 0).all() and (background[~inside] > 0).all()
    objects_only = ComposedField([LEFT, RIGHT], GRID)
    objects_only.load_state_dict(
        {k: v for k, v in scene.state_dict().items() if k.startswith("objects")}
    )
    torch.testing.assert_close(scene.density(points), objects_only.density(points) + background)


def test_total_variation_covers_every_grid():
    scene = ComposedField([LEFT, RIGHT], GRID, background_grid=GridFieldConfig(resolution=16))
    random_grids(scene)
    sum(scene.total_variation()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in scene.parameters())


def test_an_objects_grid_has_the_voxel_size_of_a_generated_one():
    # A generated field spans [-1, 1] object units in 64 voxels a side; a box's largest edge
    # spans [-VIEW_HALF_EXTENT, VIEW_HALF_EXTENT] object units, so half as many voxels.
    generated = GridFieldConfig(resolution=64, bound=1.0, blob_radius=0.6)
    grid = object_grid(generated)
    assert grid.resolution == 32 and grid.blob_radius == 0.6
    assert object_grid(replace(generated, resolution=96)).resolution == 48
    assert object_grid(replace(generated, bound=0.5)).resolution == 64


def test_each_grids_smoothing_is_weighted_by_its_voxel_share():
    background = GridFieldConfig(resolution=16)
    scene = ComposedField([LEFT, RIGHT], GRID, background, tuned_resolution=32)
    random_grids(scene)
    terms = [obj.field.total_variation(0.1) for obj in scene.objects]
    terms.append(scene.background.total_variation(0.1))
    share = (16 / 32) ** 3  # every grid here has 16 voxels a side
    for got, index in zip(scene.total_variation(0.1), (0, 1), strict=True):
        torch.testing.assert_close(got, share * sum(term[index] for term in terms))
    view_terms = scene.objects[1].view().total_variation(0.1)
    for got, expected in zip(view_terms, terms[1], strict=True):
        torch.testing.assert_close(got, share * expected)
    unweighted = ComposedField([LEFT, RIGHT], GRID, background)  # no tuned_resolution
    unweighted.load_state_dict(scene.state_dict())
    torch.testing.assert_close(unweighted.total_variation(0.1)[0], sum(t[0] for t in terms))


def test_scenes_and_object_views_render_on_the_reference_path():
    # Neither has an occupancy grid, so skipping empty space leaves them as they were.
    scene = ComposedField([LEFT, RIGHT], GRID)
    random_grids(scene)
    one = torch.ones(1)
    camera = orbit_cameras(20 * one, 35 * one, 1.6 * one, 50 * one)
    args = (8, 8, torch.tensor([int(ShadingMode.LIT)]), torch.full((1, 3), 0.5))
    with torch.no_grad():
        for subject in (scene, scene.objects[0].view()):
            fast = render(subject, camera, *args, RenderConfig(16, 16, skip_empty=True))
            reference = render(subject, camera, *args, RenderConfig(16, 16, skip_empty=False))
            assert torch.equal(fast.rgb, reference.rgb)
