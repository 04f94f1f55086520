"""Building and loading the field's C kernels: once into the cache, a fallback without a
compiler, a switch to turn them off, and the reference path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.field import cpu_build, cpu_trilinear, cpu_variation
from backend.field.grid_field import sample_grid


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """The kernels built anew into an empty cache, and forgotten afterwards."""
    monkeypatch.setenv("BOXDREAM_KERNEL_CACHE", str(tmp_path))

    def forget() -> None:
        cpu_build.load.cache_clear()
        cpu_trilinear.library.cache_clear()
        cpu_variation.library.cache_clear()

    forget()
    yield tmp_path
    forget()


def test_each_kernel_is_built_once_into_its_cache(fresh_build):
    assert cpu_trilinear.library() is not None and cpu_variation.library() is not None
    built = {path.name.split("-")[0]: path for path in fresh_build.glob("*.so")}
    assert set(built) == {"cpu_trilinear", "cpu_variation"}
    stamps = {name: path.stat().st_mtime_ns for name, path in built.items()}
    cpu_build.load.cache_clear()
    assert cpu_build.load("cpu_trilinear", "") is not None
    assert cpu_build.load("cpu_variation", "") is not None
    assert {name: path.stat().st_mtime_ns for name, path in built.items()} == stamps


def test_without_a_compiler_lookups_fall_back_to_the_grid_sampler(fresh_build, monkeypatch, caplog):
    monkeypatch.setenv("CC", str(fresh_build / "no-such-compiler"))
    with caplog.at_level("WARNING"):
        assert cpu_trilinear.library() is None
    assert "could not be built" in caplog.text and "no-such-compiler" in caplog.text
    assert "grid sampler" in caplog.text  # what happens instead
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


def test_the_kernels_can_be_turned_off(fresh_build, monkeypatch):
    monkeypatch.setenv("BOXDREAM_CPU_KERNEL", "0")
    assert cpu_trilinear.library() is None and cpu_variation.library() is None
    assert not list(fresh_build.iterdir())


def test_the_reference_path_runs_no_kernel():
    grid, points = torch.randn(1, 2, 5, 5, 5), torch.rand(10, 3)
    assert cpu_trilinear.supports(grid, points) and cpu_variation.supports(grid)
    with cpu_build.reference_path():
        assert cpu_build.on_reference_path() and not cpu_variation.supports(grid)
        assert not cpu_trilinear.supports(grid, points)
    assert not cpu_build.on_reference_path()
