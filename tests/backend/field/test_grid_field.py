"""Dense grid field: blob initialisation, normals of a known field."""

from __future__ import annotations

import math

import pytest
import torch

from backend.cpu_build import reference_path
from backend.field.grid_field import (
    DenseGridField,
    GridFieldConfig,
    sample_grid,
    sampler_batches,
)


def test_blob_start_is_a_centred_ball():
    field = DenseGridField(GridFieldConfig(resolution=32, blob_density=10.0, blob_radius=0.5))
    centre, edge = torch.zeros(1, 3), torch.tensor([[0.9, 0.0, 0.0]])
    assert field.density(centre).item() > 9.9
    assert field.density(edge).item() < 0.01
    assert torch.allclose(field.albedo(centre), torch.full((1, 3), 0.5))


def test_normals_of_the_blob_point_outward():
    field = DenseGridField(GridFieldConfig(resolution=32))
    directions = torch.nn.functional.normalize(torch.randn(100, 3), dim=-1)
    points = directions * 0.4
    normals = field(points).normal
    cos = (normals * directions).sum(-1)
    assert cos.min() > 0.999


def test_normals_follow_a_planar_grid_density():
    # Raw density rising along -x (plus the blob bias, removed): normals point to +x.
    field = DenseGridField(GridFieldConfig(resolution=32, blob_density=0.0))
    xs = torch.linspace(-1, 1, 32)
    with torch.no_grad():
        field.density_grid.copy_((-5.0 * xs).view(1, 1, 1, 1, 32).expand(1, 1, 32, 32, 32))
    points = torch.rand(50, 3) * 1.6 - 0.8
    normals = field(points).normal
    assert torch.allclose(normals, torch.tensor([1.0, 0.0, 0.0]).expand(50, 3), atol=1e-4)


def test_normals_are_differentiable_in_the_grid():
    field = DenseGridField(GridFieldConfig(resolution=16))
    samples = field(torch.rand(20, 3) * 0.8 - 0.4)
    samples.normal[:, 0].sum().backward()
    assert field.density_grid.grad.abs().sum() > 0


def test_density_scale_multiplies_sigma_and_keeps_the_normals():
    plain = DenseGridField(GridFieldConfig(resolution=16))
    scaled = DenseGridField(GridFieldConfig(resolution=16, density_scale=2.0))
    points = torch.rand(30, 3) * 0.8 - 0.4
    torch.testing.assert_close(scaled.density(points), 2.0 * plain.density(points))
    torch.testing.assert_close(scaled(points).density, 2.0 * plain(points).density)
    torch.testing.assert_close(scaled(points).normal, plain(points).normal)


def test_total_variation_terms_by_grid():
    field = DenseGridField(GridFieldConfig(resolution=4, blob_density=0.0))
    with torch.no_grad():
        field.density_grid[..., 2:] = 2.0  # one jump of 2 in each row of 3 x-pairs
    density, albedo = field.total_variation()
    assert density.item() == pytest.approx(4.0 / 3)
    assert albedo.item() == 0.0  # uniform grey
    edge_density, _ = field.total_variation(density_eps=0.1)
    assert edge_density.item() == pytest.approx((math.sqrt(4.01) - 0.1) / 3)


@pytest.mark.parametrize("blob_density", [3.5, 0.0, -2.0])
def test_occupancy_holds_every_point_denser_than_its_threshold(blob_density):
    from backend.geometry.occupancy import OccupancyConfig

    config = GridFieldConfig(resolution=18, blob_density=blob_density, density_scale=2.0)
    field = DenseGridField(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a few dense voxels in empty space
        spots = torch.rand(field.density_grid.shape, generator=generator) < 0.01
        field.density_grid.copy_(torch.where(spots, 3.0, -12.0))
    occupancy = field.occupancy(OccupancyConfig(threshold=0.5, cell_voxels=4, dilation=0))
    points = torch.rand(200_000, 3, generator=generator) * 2.0 - 1.0
    dense = field.density(points) > 0.5
    assert dense.any() and not occupancy.cells.all()
    assert occupancy.contains(points)[dense].all()


def test_kernel_and_reference_path_give_the_same_field_and_gradients():
    from backend.field import cpu_field_table, cpu_trilinear

    # The kernels are what is compared: the field's table and the lookup.
    assert cpu_trilinear.library() is not None and cpu_field_table.library() is not None
    field = DenseGridField(GridFieldConfig(resolution=16))
    with torch.no_grad():
        field.density_grid.normal_()
        field.albedo_grid.normal_()
    points = torch.rand(5000, 3) * 2.2 - 1.1  # some outside the cube (border-clamped)

    def lookup() -> tuple[torch.Tensor, ...]:
        samples = field(points)
        loss = (
            samples.density.sum()
            + samples.albedo.square().sum()
            + (samples.normal * torch.tensor([0.3, -0.5, 0.8])).sum()
        )
        return (
            samples.density,
            samples.albedo,
            samples.normal,
            *torch.autograd.grad(loss, [field.density_grid, field.albedo_grid]),
        )

    fast = lookup()
    with reference_path():
        reference = lookup()
    for a, b in zip(fast, reference, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_points_that_need_a_gradient_get_one():
    grid = torch.randn(1, 3, 8, 8, 8)
    points = (torch.rand(100, 3) * 1.8 - 0.9).requires_grad_(True)
    (grad,) = torch.autograd.grad(sample_grid(grid, points, 1.0).sum(), points)
    assert grad.abs().sum() > 0


def test_split_grid_sampler_lookups_equal_one_batch_values_and_gradients():
    # Points that need a gradient take the grid sampler (so does every lookup without the C
    # kernel); 10,001 points: padded to equal batches on 2 threads.
    grid = torch.randn(1, 7, 16, 16, 16, requires_grad=True)
    points = (torch.rand(10_001, 3) * 2.2 - 1.1).requires_grad_(True)  # some outside the cube
    weights = torch.randn(10_001, 7)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert sampler_batches(grid, len(points)) == 2
        split = sample_grid(grid, points, 1.0)
        split_grads = torch.autograd.grad((split * weights).sum(), [grid, points])
        with reference_path():
            assert sampler_batches(grid, len(points)) == 1
            whole = sample_grid(grid, points, 1.0)
            whole_grads = torch.autograd.grad((whole * weights).sum(), [grid, points])
    finally:
        torch.set_num_threads(threads)
    assert split.shape == (10_001, 7)
    assert torch.equal(split, whole)
    for a, b in zip(split_grads, whole_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_grid_sampler_lookups_are_not_split_beyond_the_gradient_copies_budget():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = torch.zeros(1, 7, 16, 16, 16)
        assert sampler_batches(small, 1000) == 1  # too few points for a second batch
        huge = torch.zeros(1).expand(1, 1, 400, 400, 400)  # 64M values, no copy
        assert sampler_batches(huge, 10**6) == 1
    finally:
        torch.set_num_threads(threads)
