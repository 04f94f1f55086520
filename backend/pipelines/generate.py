"""Text to textured mesh: optimise a fresh field (or several particles, each its own field and
mesh) under the prompt, then export it."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import replace

import torch

from backend.export.export_field import export_field, to_glb
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
from protocol.messages import IDENTITY, GenerateRequest, Preview, Progress, Result, ResultMesh

EXPORT_ETA_S = 8.0
"""Rough seconds the export takes on CPU (for the ETA while optimising)."""


def optimise_prompt_particles(
    request: GenerateRequest,
    prior: Guide,
    config: DistillConfig,
    should_cancel: Callable[[], bool],
    state: LoopState | None = None,
) -> Generator[Progress | Preview, None, list[DenseGridField]]:
    """Optimise `config.particles` new fields for the request's prompt, in turn, under one
    method (VSD's LoRA learns the renders of all of them); particle i draws from seed
    `request.seed + i`. Yields events and returns the fields."""
    torch.manual_seed(request.seed)
    fields = [DenseGridField(config.grid).to(prior.device) for _ in range(config.particles)]
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
                    eta_tail_s=EXPORT_ETA_S * config.particles,
                )
            )
            for i, field in enumerate(fields)
        ]
        yield from interleave(runs)
    return fields


def optimise_prompt_field(
    request: GenerateRequest,
    prior: Guide,
    config: DistillConfig,
    should_cancel: Callable[[], bool],
    state: LoopState | None = None,
) -> Generator[Progress | Preview, None, DenseGridField]:
    """Optimise one new field for the request's prompt (whatever `config.particles` says);
    yields events and returns the field."""
    one = replace(config, particles=1)
    fields = yield from optimise_prompt_particles(request, prior, one, should_cancel, state)
    return fields[0]


def generate(
    request: GenerateRequest,
    prior: Guide,
    config: DistillConfig,
    should_cancel: Callable[[], bool],
) -> Iterator[Progress | Preview | Result]:
    """The generate pipeline: events while optimising, an export stage, then the result (one
    mesh per particle)."""
    fields = yield from optimise_prompt_particles(request, prior, config, should_cancel)
    n = len(fields)
    yield Progress(stage="export", step=0, total=n, loss=None, eta_s=EXPORT_ETA_S * n)
    name = mesh_name(request.prompt)
    meshes = []
    for i, field in enumerate(fields):
        particle = particle_name(name, i, n)
        mesh = export_field(
            field, config.export, config.face_budget, config.texture_size, name=particle
        )
        meshes.append(ResultMesh(name=particle, glb=to_glb(mesh), transform=IDENTITY))
        yield Progress(
            stage="export", step=i + 1, total=n, loss=None, eta_s=EXPORT_ETA_S * (n - i - 1)
        )
    yield Result(meshes=meshes)
