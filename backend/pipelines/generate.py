"""Text to textured mesh: optimise a fresh field (or several particles, each its own field and
mesh) under the prompt, refine its surface as a mesh when the preset has stage 2
(`backend.pipelines.refine`), then export it."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from functools import partial

import torch

from backend.export.export_field import to_glb
from backend.field.grid_field import DenseGridField
from backend.guidance.clip_model import ClipModel
from backend.guidance.distillation import Guide
from backend.pipelines.distill_loop import DistillRun, LoopState, distill
from backend.pipelines.methods import distillation_method
from backend.pipelines.naming import mesh_name
from backend.pipelines.particles import interleave, particle_name
from backend.pipelines.presets import DistillConfig
from backend.pipelines.prompt_guidance import (
    PromptEmbeddings,
    camera_view_sampler,
    prompt_view_sampler,
)
from backend.pipelines.refine import (
    Optimised,
    export_optimised,
    initial_surface,
    refine_eta_s,
    refine_surface,
)
from protocol.messages import IDENTITY, GenerateRequest, Preview, Progress, Result, ResultMesh

EXPORT_ETA_S = 8.0
"""Rough seconds the export takes on CPU (for the ETA while optimising)."""


def optimise_prompt_particles(
    request: GenerateRequest,
    prior: Guide,
    config: DistillConfig,
    should_cancel: Callable[[], bool],
    state: LoopState | None = None,
    refine_state: LoopState | None = None,
    stage_1: list[DenseGridField] | None = None,
) -> Generator[Progress | Preview, None, list[Optimised]]:
    """Optimise `config.particles` new fields for the request's prompt, in turn, under one
    method (VSD's LoRA learns the renders of all of them); particle i draws from seed
    `request.seed + i`. With `config.refine` set, each field's surface then goes through
    stage 2 under the same method. Yields events and returns the fields, or their refined
    surfaces; `state` and `refine_state` collect each stage's running numbers. `stage_1`:
    fields a stage 1 of this request already made (left unchanged), so only stage 2 runs
    (the README's stage 2 off / on pictures)."""
    torch.manual_seed(request.seed)
    fields = stage_1 or [
        DenseGridField(config.grid).to(prior.device) for _ in range(config.particles)
    ]
    with distillation_method(request.method, prior, config, request.prompt) as method:
        if isinstance(prior, ClipModel):
            sample_views = camera_view_sampler(config)
        else:
            embeddings = PromptEmbeddings.encode(prior, request.prompt, request.negative_prompt)
            sample_views = prompt_view_sampler(prior, embeddings, config)

        runs = [
            distill(
                DistillRun(
                    field,
                    prior,
                    method,
                    config,
                    sample_views,
                    torch.Generator().manual_seed(request.seed + i),
                    should_cancel,
                    state=state,
                    eta_tail_s=(EXPORT_ETA_S + refine_eta_s(config)) * config.particles,
                )
            )
            for i, field in enumerate(fields)
            if stage_1 is None
        ]
        yield from interleave(runs)
        if config.refine is None:
            return list(fields)
        surfaces = []
        for i, field in enumerate(fields):
            surface = yield from refine_surface(
                initial_surface(field, config.refine, config.export),
                prior,
                method,
                config,
                partial(prompt_view_sampler, prior, embeddings),
                torch.Generator().manual_seed(request.seed + i),
                should_cancel,
                refine_state,
                eta_tail_s=(EXPORT_ETA_S + refine_eta_s(config)) * (config.particles - i - 1)
                + EXPORT_ETA_S,
            )
            surfaces.append(surface)
    return surfaces


def optimise_prompt_field(
    request: GenerateRequest,
    prior: Guide,
    config: DistillConfig,
    should_cancel: Callable[[], bool],
    state: LoopState | None = None,
    refine_state: LoopState | None = None,
) -> Generator[Progress | Preview, None, Optimised]:
    """Optimise one new field for the request's prompt (whatever `config.particles` says),
    and refine it when `config.refine` is set; yields events and returns the field or its
    refined surface."""
    one = replace(config, particles=1)
    results = yield from optimise_prompt_particles(
        request, prior, one, should_cancel, state, refine_state
    )
    return results[0]


def generate(
    request: GenerateRequest,
    prior: Guide,
    config: DistillConfig,
    should_cancel: Callable[[], bool],
) -> Iterator[Progress | Preview | Result]:
    """The generate pipeline: events while optimising, an export stage, then the result (one
    mesh per particle)."""
    results = yield from optimise_prompt_particles(request, prior, config, should_cancel)
    n = len(results)
    yield Progress(stage="export", step=0, total=n, loss=None, eta_s=EXPORT_ETA_S * n)
    name = mesh_name(request.prompt)
    meshes = []
    for i, result in enumerate(results):
        particle = particle_name(name, i, n)
        mesh = export_optimised(result, config, name=particle)
        meshes.append(ResultMesh(name=particle, glb=to_glb(mesh), transform=IDENTITY))
        yield Progress(
            stage="export", step=i + 1, total=n, loss=None, eta_s=EXPORT_ETA_S * (n - i - 1)
        )
    yield Result(meshes=meshes)
