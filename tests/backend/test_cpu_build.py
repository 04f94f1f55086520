"""Building and loading the C kernels: once into the cache, a fallback without a
compiler, a switch to turn them off, and the reference path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend import cpu_build
from backend.field import cpu_field_table, cpu_trilinear, cpu_variation
from backend.field.grid_field import DenseGridField, GridFieldConfig, sample_grid
from backend.render import cpu_composite, cpu_importance
from backend.render.cameras import orbit_cameras
from backend.render.renderer import render

KERNELS = (cpu_trilinear, cpu_variation, cpu_field_table, cpu_importance, cpu_composite)


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """The kernels built anew into an empty cache, and forgotten afterwards."""
    monkeypatch.setenv("BOXDREAM_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu_build, "_warned", set())

    def forget() -> None:
        for kernel in KERNELS:
            kernel.library.cache_clear()

    forget()
    yield tmp_path
    forget()


def test_each_kernel_is_built_once_into_its_cache(fresh_build):
    assert all(kernel.library() is not None for kernel in KERNELS)
    built = {path.name.split("-")[0]: path for path in fresh_build.glob("*.so")}
    assert set(built) == {kernel.__name__.rsplit(".", 1)[1] for kernel in KERNELS}
    stamps = {name: path.stat().st_mtime_ns for name, path in built.items()}
    assert all(cpu_build.load(kernel.SOURCE, "", {}) is not None for kernel in KERNELS)
    assert {name: path.stat().st_mtime_ns for name, path in built.items()} == stamps


def test_without_a_compiler_lookups_fall_back_to_the_grid_sampler(fresh_build, monkeypatch, caplog):
    monkeypatch.setenv("CC", str(fresh_build / "no-such-compiler"))
    with caplog.at_level("WARNING"):
        assert all(kernel.library() is None for kernel in KERNELS)
    assert "could not be built" in caplog.text and "no-such-compiler" in caplog.text
    assert "grid sampler" in caplog.text and "2.5x slower" in caplog.text  # what happens
    assert len(caplog.records) == 1  # one warning for the machine, not one per kernel
    grid = torch.randn(1, 2, 5, 5, 5)
    points = torch.rand(50, 3) * 2.0 - 1.0
    assert not cpu_trilinear.supports(grid, points)
    reference = (
        F.grid_sample(grid, points.view(1, 50, 1, 1, 3), padding_mode="border", align_corners=True)
        .view(2, 50)
        .t()
    )
    torch.testing.assert_close(sample_grid(grid, points, 1.0), reference)
    assert not cpu_variation.supports(grid)
    field = DenseGridField(GridFieldConfig(resolution=5))
    assert not cpu_field_table.supports(field.density_grid, field.albedo_grid)
    samples = field(points)  # the table is built in PyTorch instead
    torch.testing.assert_close(samples.density, field.density(points))
    assert not cpu_composite.supports(samples.density.view(5, 10))
    assert not cpu_importance.supports(samples.density.view(5, 10))
    cameras = orbit_cameras(*(torch.tensor([v]) for v in (20.0, 30.0, 2.0, 50.0)))
    image = render(field, cameras, 4, 4, torch.zeros(1, dtype=torch.long), torch.ones(1, 3))
    assert torch.isfinite(image.rgb).all()  # rays sampled and composited in PyTorch


def test_the_kernels_can_be_turned_off(fresh_build, monkeypatch):
    monkeypatch.setenv("BOXDREAM_CPU_KERNEL", "0")
    assert all(kernel.library() is None for kernel in KERNELS)
    assert not list(fresh_build.iterdir())


def test_the_reference_path_runs_no_kernel():
    grid, points = torch.randn(1, 2, 5, 5, 5), torch.rand(10, 3)
    assert cpu_trilinear.supports(grid, points) and cpu_variation.supports(grid)
    with cpu_build.reference_path():
        assert cpu_build.on_reference_path() and not cpu_variation.supports(grid)
        assert not cpu_trilinear.supports(grid, points)
    assert not cpu_build.on_reference_path()
