"""Stage 2, Magic3D's coarse-to-fine refinement: the coarse field's surface becomes an explicit
mesh (`backend.field.surface_mesh.SurfaceMesh`: normal offsets per vertex, the field's albedo
grid as its colour) that keeps distilling under the same method and prompt through the
differentiable rasteriser (`backend.render.mesh_renderer`) at the stage's resolution, with the
mesh regularisers lambda_lap L + lambda_nc C (Laplacian, normal consistency) in place of the
volume's sparsity, orientation and smoothing. Its Progress and Preview events name the stage
"refine"; cancel is checked before each step, as in stage 1."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace
from functools import partial

import numpy as np
import torch
import trimesh

from backend.export.decimate import decimate
from backend.export.export_field import (
    ExportConfig,
    ExportTimings,
    export_field,
    field_surface,
    texture_surface,
)
from backend.export.field_protocol import field_device
from backend.export.normal_bake import bake_normal_map, welded_normals
from backend.export.textured_mesh import TexturedMesh
from backend.field.composed_field import ObjectView
from backend.field.grid_field import DenseGridField
from backend.field.surface_mesh import SurfaceMesh
from backend.guidance.distillation import DistillationMethod
from backend.guidance.prior import DiffusionPrior
from backend.pipelines.distill_loop import DistillRun, LoopState, ViewSampler, distill
from backend.pipelines.presets import DistillConfig, RefineConfig, RegulariserConfig
from backend.render.mesh_renderer import render_mesh
from backend.render.preview import preview_png
from protocol.messages import Preview, Progress

STAGE = "refine"
"""The stage name of stage 2's events."""

REFINE_STEP_ETA_S = 0.25
"""Rough seconds of one stage-2 step on CPU (for the ETA of the stages before it)."""

Optimised = DenseGridField | SurfaceMesh
"""What a prompt's optimisation hands the export: the coarse field, or its refined surface."""

NO_VOLUME_REGULARISERS = RegulariserConfig(
    sparsity=0.0, orientation_start=0.0, orientation_end=0.0, total_variation=0.0
)
"""A mesh has no density to keep sparse or oriented and no grid to smooth."""


def initial_surface(
    field: DenseGridField,
    refine: RefineConfig,
    export: ExportConfig,
    view: ObjectView | None = None,
) -> SurfaceMesh:
    """The coarse field's cleaned marching-cubes surface (as the export draws it), decimated to
    `refine.faces` and subdivided `refine.subdivisions` times, carrying a copy of the field's
    albedo grid; in the field's frame, or in `view`'s (a composed scene's object in object
    units, where its object-centred cameras are)."""
    device = field_device(field)
    if view is None:
        vertices, faces = field_surface(field, export, device)
        grid_half: float | tuple[float, float, float] = field.bound
    else:
        vertices, faces = field_surface(view, export, device)
        grid_half = view.field_half_extent
    vertices, faces = decimate(vertices, faces, refine.faces)
    for _ in range(refine.subdivisions):
        vertices, faces = trimesh.remesh.subdivide(vertices, faces)
    return SurfaceMesh(
        torch.from_numpy(vertices).float().to(device),
        torch.from_numpy(faces).to(device),
        field.albedo_grid,
        grid_half,
        refine.mesh,
    )


def refine_eta_s(config: DistillConfig) -> float:
    """Rough seconds stage 2 takes under `config` (0 when it is off)."""
    return 0.0 if config.refine is None else REFINE_STEP_ETA_S * config.refine.steps


def stage_config(config: DistillConfig) -> DistillConfig:
    """The distillation run of stage 2 from a preset's (which must have `refine` set): its
    steps, views, resolution and learning rate, no volume regularisers."""
    refine = config.refine
    if refine is None:
        raise ValueError("stage_config needs a config with refine set")
    return replace(
        config,
        steps=refine.steps,
        views=refine.views,
        resolution=refine.resolution,
        lr=refine.lr,
        lr_end=refine.lr_end,
        regularisers=NO_VOLUME_REGULARISERS,
        preview_every=refine.preview_every,
    )


def mesh_regularisers(surface: SurfaceMesh, refine: RefineConfig) -> torch.Tensor:
    """lambda_lap L(v) + lambda_nc C(v) at the surface's current vertices."""
    vertices = surface.vertices()
    return refine.laplacian * surface.laplacian(vertices) + (
        refine.normal_consistency
        * surface.normal_consistency(vertices, refine.normal_consistency_eps)
    )


def refine_surface(
    surface: SurfaceMesh,
    prior: DiffusionPrior,
    method: DistillationMethod,
    config: DistillConfig,
    sample_views: Callable[[DistillConfig], ViewSampler],
    generator: torch.Generator,
    should_cancel: Callable[[], bool],
    state: LoopState | None = None,
    eta_tail_s: float = 0.0,
    stage: str = STAGE,
    after_step: Callable[[], None] | None = None,
) -> Generator[Progress | Preview, None, SurfaceMesh]:
    """Run stage 2 on `surface` (from `initial_surface`) under `method`; `sample_views` makes
    the run's view sampler from the stage's config; `stage` names its events, `after_step`
    runs after each update (a shape edit's region). Yields events, returns the surface."""
    refine = config.refine
    if refine is None:
        raise ValueError("refine_surface needs a config with refine set")
    run = stage_config(config)
    yield from distill(
        DistillRun(
            surface,
            prior,
            method,
            run,
            sample_views(run),
            generator,
            should_cancel,
            stage=stage,
            after_step=after_step,
            state=state,
            eta_tail_s=eta_tail_s,
            renderer=render_mesh,
            preview=partial(preview_png, renderer=render_mesh),
            regularise=partial(mesh_regularisers, refine=refine),
        )
    )
    return surface


def export_surface(
    surface: SurfaceMesh,
    config: DistillConfig,
    *,
    name: str = "boxdream_object",
    timings: ExportTimings | None = None,
) -> TexturedMesh:
    """The refined surface as a textured mesh: decimated to the preset's face budget,
    unwrapped, its albedo baked; when the budget decimated it, with a normal map baked from
    the refined surface (`backend.export.normal_bake`), so its detail still shades."""
    with torch.no_grad():
        vertices = surface.vertices().detach().cpu().double().numpy()
    faces = surface.faces.cpu().numpy().astype(np.int64)
    device = surface.offsets.device

    def albedo(points: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return surface.albedo(points.to(device)).cpu()

    mesh = texture_surface(
        vertices,
        faces,
        albedo,
        config.export,
        config.face_budget,
        config.texture_size,
        name=name,
        timings=timings,
    )
    if len(faces) <= config.face_budget:
        return mesh
    normals = welded_normals(mesh.vertices, mesh.faces)
    normal_map = bake_normal_map(
        mesh.vertices,
        mesh.faces,
        mesh.uvs,
        normals,
        vertices,
        faces,
        config.texture_size,
        config.export.padding,
    )
    return replace(mesh, normals=normals, normal_texture=normal_map)


def export_optimised(
    result: Optimised,
    config: DistillConfig,
    *,
    name: str = "boxdream_object",
    timings: ExportTimings | None = None,
) -> TexturedMesh:
    """The textured mesh of a coarse field (its marching-cubes surface) or of a refined
    surface, at the preset's face budget and texture size."""
    if isinstance(result, SurfaceMesh):
        return export_surface(result, config, name=name, timings=timings)
    return export_field(
        result, config.export, config.face_budget, config.texture_size, name=name, timings=timings
    )
