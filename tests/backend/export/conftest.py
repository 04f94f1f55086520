"""Fixtures of the export tests; torch runs on one thread (the machine is shared)."""

from __future__ import annotations

import pytest
import torch
from export_shapes import SphereField

from backend.export.export_field import ExportConfig, ExportTimings, export_field
from backend.export.marching import MarchingConfig

torch.set_num_threads(1)


@pytest.fixture
def sphere_field() -> SphereField:
    return SphereField()


@pytest.fixture(scope="session")
def exported_sphere():
    """The sphere field through the whole export at test sizes: (mesh, timings)."""
    timings = ExportTimings()
    config = ExportConfig(marching=MarchingConfig(fine_resolution=64))
    mesh = export_field(
        SphereField(), config, face_budget=3000, texture_size=256, name="ball", timings=timings
    )
    return mesh, timings
