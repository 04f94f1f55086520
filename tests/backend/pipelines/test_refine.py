"""Stage 2, the mesh refinement: its starting surface against analytic shapes, what it does to
a bumpy surface under a prior, its events, cancel and export inside generate."""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch
import trimesh

from backend.export.export_field import ExportConfig
from backend.export.glb import read_glb
from backend.export.marching import MarchingConfig
from backend.field.grid_field import DenseGridField, GridFieldConfig
from backend.field.surface_mesh import SurfaceMesh
from backend.geometry.surface_angles import surface_angles
from backend.guidance.prior import ModelFamily
from backend.pipelines.cancel import JobCancelled
from backend.pipelines.compose import compose
from backend.pipelines.generate import generate
from backend.pipelines.methods import distillation_method
from backend.pipelines.presets import RefineConfig, preset_config
from backend.pipelines.prompt_guidance import PromptEmbeddings, prompt_view_sampler
from backend.pipelines.refine import initial_surface, refine_surface
from backend.render.renderer import RenderConfig
from protocol.messages import ComposeRequest, GenerateRequest, Preview, Progress, Result
from tests.backend.pipelines.test_compose import BOXES, in_box_frame, world_vertices

RESOLUTION = 48
SPACING = 2.0 / (RESOLUTION - 1)


def _sdf_field(sdf) -> DenseGridField:
    """A grid field whose raw density is -sdf / spacing (no blob), so the surface is sdf = 0."""
    field = DenseGridField(GridFieldConfig(resolution=RESOLUTION, blob_density=0.0))
    axis = torch.linspace(-1.0, 1.0, RESOLUTION)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    points = torch.stack([x, y, z], -1)
    with torch.no_grad():
        field.density_grid.copy_(-4.0 * sdf(points)[None, None] / SPACING)
    return field


def _fill(vertices: np.ndarray, faces: np.ndarray) -> float:
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return float(mesh.volume / np.prod(mesh.extents))


def test_starting_surface_reproduces_an_analytic_sphere_and_cube():
    # Tolerance: a third of a voxel of the 48^3 grid (0.014) off the analytic surface.
    tolerance = SPACING / 3
    refine = RefineConfig(faces=3000)
    # The level where sdf = 0: sigma = softplus(0) = log 2.
    export = replace(ExportConfig(), marching=MarchingConfig(threshold=math.log(2.0)))
    sphere = initial_surface(_sdf_field(lambda p: p.norm(dim=-1) - 0.5), refine, export)
    v = sphere.vertices().detach()
    assert len(sphere.faces) <= 3000
    assert float((v.norm(dim=-1) - 0.5).abs().max()) < tolerance
    assert surface_angles(v.numpy(), sphere.faces.numpy()).median_deg < 6.0

    half = 0.4
    cube = initial_surface(_sdf_field(lambda p: _box_sdf(p, half)), refine, export)
    v = cube.vertices().detach()
    assert float((_box_sdf(v, half)).abs().max()) < tolerance
    assert _fill(v.numpy(), cube.faces.numpy()) > 0.95


def _box_sdf(points: torch.Tensor, half: float) -> torch.Tensor:
    q = points.abs() - half
    return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)


def _bumpy(mesh: trimesh.Trimesh, amplitude: float, seed: int) -> SurfaceMesh:
    rng = np.random.default_rng(seed)
    vertices = mesh.vertices + amplitude * rng.standard_normal((len(mesh.vertices), 1)) * (
        mesh.vertex_normals
    )
    albedo = torch.zeros(1, 3, 8, 8, 8)
    return SurfaceMesh(
        torch.from_numpy(vertices).float(), torch.from_numpy(mesh.faces), albedo, 1.0
    )


def _refine(surface: SurfaceMesh, prior, steps: int) -> SurfaceMesh:
    config = _fast_config(steps)
    prompt = "a red cube"
    with distillation_method("sds", prior, config, prompt) as method:
        embeddings = PromptEmbeddings.encode(prior, prompt)
        loop = refine_surface(
            surface,
            prior,
            method,
            config,
            partial(prompt_view_sampler, prior, embeddings),
            torch.Generator().manual_seed(0),
            lambda: False,
        )
        while True:
            try:
                next(loop)
            except StopIteration as done:
                return done.value


def _fast_config(refine_steps: int = 3, steps: int = 2):
    config = preset_config("standard", "sds", ModelFamily.BUILTIN)
    refine = replace(
        config.refine, steps=refine_steps, views=2, resolution=24, faces=300, preview_every=3
    )
    return replace(
        config,
        steps=steps,
        preview_every=steps,
        resolution=16,
        grid=replace(config.grid, resolution=24),
        render=RenderConfig(12, 12),
        face_budget=2000,
        texture_size=64,
        refine=refine,
    )


def test_refinement_smooths_a_bumpy_surface_and_keeps_a_cube_full(pixel_prior):
    # Under a random prior (noise, which alone makes the sphere bumpier: 12.6 deg median and
    # a cube fill of 0.88 after 40 steps), the preset's regularisers take a sphere with 1%
    # bumps (11.7 / 28.7 deg) to the smoothness of the clean icosphere (5.4 / 5.7 deg), and
    # keep a cube's edges.
    ico = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    clean = surface_angles(ico.vertices, ico.faces)
    sphere = _bumpy(ico, 0.01, seed=0)
    before = surface_angles(sphere.vertices().detach().numpy(), ico.faces)
    after = surface_angles(_refine(sphere, pixel_prior, 40).vertices().detach().numpy(), ico.faces)
    assert before.median_deg > 2 * clean.median_deg
    assert after.median_deg < 1.2 * clean.median_deg and after.p90_deg < 2 * clean.p90_deg

    box = trimesh.creation.box(extents=(0.8, 0.8, 0.8)).subdivide().subdivide().subdivide()
    cube = _refine(_bumpy(box, 0.005, seed=1), pixel_prior, 40)
    assert _fill(cube.vertices().detach().numpy(), cube.faces.numpy()) > 0.92


@pytest.mark.parametrize("method", ["sds", "vsd", "sjc"])
def test_generate_runs_stage_2_names_it_and_exports_the_refined_surface(pixel_prior, method):
    request = GenerateRequest(prompt="a red cube", method=method)
    events = list(generate(request, pixel_prior, _fast_config(), lambda: False))
    refine = [e for e in events if isinstance(e, Progress) and e.stage == "refine"]
    assert [p.step for p in refine] == [1, 2, 3] and all(p.total == 3 for p in refine)
    stages = [e.stage for e in events if isinstance(e, Preview)]
    assert stages == ["optimise", "refine"]
    (mesh,) = read_glb(events[-1].meshes[0].glb)
    # 300 faces, subdivided once by the preset.
    assert isinstance(events[-1], Result) and mesh.texture is not None and len(mesh.faces) <= 1200


def test_cancel_takes_effect_within_one_step_of_stage_2(pixel_prior):
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 2 + 2  # both stage-1 steps, then two of stage 2

    seen = []
    with pytest.raises(JobCancelled):
        for event in generate(
            GenerateRequest(prompt="a cube"), pixel_prior, _fast_config(10), should_cancel
        ):
            seen.append(event)
    assert max(e.step for e in seen if isinstance(e, Progress) and e.stage == "refine") == 2


def test_compose_refines_each_object_in_its_box(pixel_prior):
    config = replace(
        _fast_config(2),
        grid=replace(_fast_config().grid, resolution=16),
        render=RenderConfig(8, 8),
        export=replace(ExportConfig(), marching=MarchingConfig(32, 48)),
    )
    events = list(compose(ComposeRequest(boxes=BOXES), pixel_prior, config, lambda: False))
    refine = [e for e in events if isinstance(e, Progress) and e.stage == "refine"]
    assert [p.step for p in refine] == [1, 2, 1, 2]  # both objects, in turn
    for mesh_out, box in zip(events[-1].meshes, BOXES, strict=True):
        local = in_box_frame(world_vertices(mesh_out), box)
        half = np.asarray(box.size) / 2
        assert (np.abs(local) <= half * 1.001).all(), (mesh_out.name, np.abs(local).max(0), half)
        # The object keeps the box's proportions (the surface lives in object units).
        reach = np.abs(local).max(axis=0) / half
        assert reach.min() > 0.4 and reach.max() - reach.min() < 0.1, reach
