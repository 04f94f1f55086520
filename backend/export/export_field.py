"""A density + albedo field -> textured mesh -> GLB: the export stages in order, timed.

marching cubes (two passes) -> cleanup -> decimation to a face budget -> xatlas UVs -> texture
baked from the albedo -> (to_glb) GLB bytes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from backend.export.cleanup import CleanupConfig, clean_mesh
from backend.export.decimate import decimate
from backend.export.field_protocol import DensityField, ExportableField, field_device
from backend.export.glb import write_glb
from backend.export.marching import MarchingConfig, marching_cubes
from backend.export.texture_bake import ColourFn, bake_texture
from backend.export.textured_mesh import TexturedMesh
from backend.export.uv_unwrap import unwrap_uv


@dataclass(frozen=True)
class ExportConfig:
    """Settings of the export stages other than the face budget and texture size."""

    marching: MarchingConfig = dataclasses.field(default_factory=MarchingConfig)
    """Grid resolutions and iso-level."""
    cleanup: CleanupConfig = dataclasses.field(default_factory=CleanupConfig)
    """Which small components are floaters."""
    padding: int = 4
    """Empty texels between UV charts in the packing, and texels of gutter dilated around
    each chart when baking."""
    chunk_size: int = 65_536
    """Points per albedo query when baking."""


@dataclass
class ExportTimings:
    """Wall-clock milliseconds per export stage (for `boxdream bench`)."""

    marching_ms: float = 0.0
    cleanup_ms: float = 0.0
    decimate_ms: float = 0.0
    unwrap_ms: float = 0.0
    bake_ms: float = 0.0
    write_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        """Sum of all stages."""
        return (
            self.marching_ms
            + self.cleanup_ms
            + self.decimate_ms
            + self.unwrap_ms
            + self.bake_ms
            + self.write_ms
        )


@contextmanager
def _timed(timings: ExportTimings | None, stage: str) -> Iterator[None]:
    """Add the block's wall-clock milliseconds to `timings.<stage>_ms` (if timings is given)."""
    start = time.perf_counter()
    yield
    if timings is not None:
        elapsed = 1000.0 * (time.perf_counter() - start)
        setattr(timings, f"{stage}_ms", getattr(timings, f"{stage}_ms") + elapsed)


def export_field(
    field: ExportableField,
    config: ExportConfig = ExportConfig(),
    face_budget: int = 10_000,
    texture_size: int = 512,
    *,
    name: str = "boxdream_object",
    device: torch.device | str | None = None,
    timings: ExportTimings | None = None,
) -> TexturedMesh:
    """Turn a field into a textured triangle mesh in the field's local frame (identity
    transform).

    `face_budget` caps the faces (10k keeps xatlas near 3 s on 2 CPU cores); `texture_size`
    is the side of the square texture (512 on CPU; up to 2048). The field is queried on
    `device` (default: where its parameters live). If `timings` is given, each stage adds its
    milliseconds to it. Raises MeshError if the field is empty.
    """
    device = field_device(field) if device is None else torch.device(device)
    vertices, faces = field_surface(field, config, device, timings)

    def albedo_on_device(points: torch.Tensor) -> torch.Tensor:
        return field.albedo(points.to(device))

    return texture_surface(
        vertices,
        faces,
        albedo_on_device,
        config,
        face_budget,
        texture_size,
        name=name,
        timings=timings,
    )


def field_surface(
    field: DensityField,
    config: ExportConfig,
    device: torch.device,
    timings: ExportTimings | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The field's cleaned marching-cubes surface: (vertices [V, 3] float64, faces [F, 3]
    int64, outward winding). Raises MeshError if the field is empty."""
    with _timed(timings, "marching"):
        surface = marching_cubes(field.density, field.bound, config.marching, device)
    with _timed(timings, "cleanup"):
        return clean_mesh(surface.vertices, surface.faces, config.cleanup)


def texture_surface(
    vertices: np.ndarray,
    faces: np.ndarray,
    albedo: ColourFn,
    config: ExportConfig,
    face_budget: int,
    texture_size: int,
    *,
    name: str = "boxdream_object",
    timings: ExportTimings | None = None,
) -> TexturedMesh:
    """A surface (vertices [V, 3], faces [F, 3]) decimated to `face_budget`, unwrapped and
    with its base colour baked from `albedo` (points [N, 3] -> colours [N, 3])."""
    with _timed(timings, "decimate"):
        vertices, faces = decimate(vertices, faces, face_budget)
    with _timed(timings, "unwrap"):
        unwrap = unwrap_uv(vertices, faces, texture_size, config.padding)
        vertices = vertices[unwrap.vertex_map]
    with _timed(timings, "bake"):
        baked = bake_texture(
            vertices,
            unwrap.faces,
            unwrap.uvs,
            albedo,
            texture_size,
            config.padding,
            config.chunk_size,
        )
    texture = np.round(baked.image * 255.0).astype(np.uint8)
    return TexturedMesh(
        name=name, vertices=vertices, faces=unwrap.faces, uvs=unwrap.uvs, texture=texture
    )


def to_glb(
    mesh: TexturedMesh, name: str | None = None, *, timings: ExportTimings | None = None
) -> bytes:
    """GLB bytes of one mesh, renamed to `name` if given; adds `write_ms` to `timings`."""
    with _timed(timings, "write"):
        return write_glb([mesh if name is None else replace(mesh, name=name)])
