"""The shared optimisation loop: learning-rate schedule, smoothing terms, what a step moves."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
import torch

from backend.field.composed_field import ComposedField
from backend.field.grid_field import DenseGridField, GridFieldConfig
from backend.field.total_variation import charbonnier_variation, squared_variation
from backend.geometry.oriented_box import OrientedBox
from backend.guidance.sds import SDS
from backend.pipelines.distill_loop import DistillRun, distill, learning_rate, smoothing_loss
from backend.pipelines.presets import DistillConfig, RegulariserConfig
from backend.render.cameras import sample_cameras
from backend.render.renderer import RenderConfig


def test_rate_decays_exponentially_from_lr_to_lr_end():
    config = DistillConfig(lr=0.5, lr_end=0.1)
    assert learning_rate(config, 0.0) == pytest.approx(0.5)
    assert learning_rate(config, 1.0) == pytest.approx(0.1)
    assert learning_rate(config, 0.5) == pytest.approx(math.sqrt(0.5 * 0.1))  # geometric middle
    rates = [learning_rate(config, p / 10) for p in range(11)]
    assert all(a > b for a, b in itertools.pairwise(rates))


def test_rate_is_constant_without_lr_end():
    config = DistillConfig(lr=0.3)
    assert {learning_rate(config, p) for p in (0.0, 0.4, 1.0)} == {0.3}


@pytest.mark.parametrize(("field", "value"), [("lr", 0.0), ("lr_end", -0.1)])
def test_a_rate_that_is_not_positive_names_its_field(field, value):
    with pytest.raises(ValueError, match=field):
        replace(DistillConfig(), **{field: value})


def random_field() -> DenseGridField:
    field = DenseGridField(GridFieldConfig(resolution=8))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for grid in (field.density_grid, field.albedo_grid):
            grid.copy_(torch.randn(grid.shape, generator=generator))
    return field


def test_smoothing_is_squared_on_both_grids_by_default():
    field = random_field()
    loss = smoothing_loss(field, RegulariserConfig(total_variation=3.0))
    expected = 3.0 * (squared_variation(field.density_grid) + squared_variation(field.albedo_grid))
    torch.testing.assert_close(loss, expected)


def test_edge_smoothing_replaces_the_squared_term_on_the_density_only():
    field = random_field()
    reg = RegulariserConfig(
        total_variation=3.0, edge_total_variation=5.0, edge_total_variation_eps=0.2
    )
    expected = 5.0 * charbonnier_variation(field.density_grid, 0.2) + 3.0 * squared_variation(
        field.albedo_grid
    )
    torch.testing.assert_close(smoothing_loss(field, reg), expected)


def _fixed_view_run(field, prior, config, generator, view=None) -> list:
    """The events of `distill` on `field` from one fixed camera, SDS with zero noise."""
    cameras = sample_cameras(1, config.cameras, generator)
    run = DistillRun(
        field,
        prior,
        SDS(prior),
        config,
        lambda step, gen: (cameras, lambda x_t, t: torch.zeros_like(x_t)),
        generator,
        lambda: False,
        subject=None if view is None else lambda step: view,
    )
    return list(distill(run))


def test_a_step_smooths_only_what_it_renders_and_leaves_the_rest_alone(pixel_prior):
    boxes = [
        OrientedBox(centre=(-0.25, 0.0, 0.0), half_size=(0.2, 0.2, 0.2), yaw_deg=0.0),
        OrientedBox(centre=(0.25, 0.0, 0.0), half_size=(0.2, 0.2, 0.2), yaw_deg=0.0),
    ]
    scene = ComposedField(boxes, GridFieldConfig(resolution=8))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # rough grids, so that smoothing pulls on every voxel
        for parameter in scene.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator))
    before = [p.detach().clone() for p in scene.objects[1].parameters()]
    first = scene.objects[0].field.density_grid.detach().clone()
    config = replace(
        DistillConfig(steps=3, views=1, resolution=8, render=RenderConfig(8, 8), preview_every=0),
        regularisers=RegulariserConfig(total_variation=10.0),
    )
    view = scene.objects[0].view()
    assert len(_fixed_view_run(scene, pixel_prior, config, generator, view)) == 3
    assert not torch.equal(scene.objects[0].field.density_grid, first)
    for parameter, start in zip(scene.objects[1].parameters(), before, strict=True):
        assert torch.equal(parameter, start)


def test_fused_adam_moves_the_grid_as_the_per_parameter_loop_does(pixel_prior):
    # One step: later steps start from grids that differ by float rounding, and Adam's
    # normalised update turns a near-zero gradient's sign into a whole +-lr step.
    def run(fused: bool) -> list[torch.Tensor]:
        field = DenseGridField(GridFieldConfig(resolution=8))
        generator = torch.Generator().manual_seed(0)
        config = DistillConfig(
            steps=1, views=1, resolution=8, render=RenderConfig(8, 8), preview_every=0,
            fused_adam=fused,
        )  # fmt: skip
        assert len(_fixed_view_run(field, pixel_prior, config, generator)) == 1
        return [p.detach() for p in field.parameters()]

    torch.manual_seed(0)
    fused = run(True)
    torch.manual_seed(0)
    loop = run(False)
    assert not torch.equal(fused[0], DenseGridField(GridFieldConfig(resolution=8)).density_grid)
    for a, b in zip(fused, loop, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
