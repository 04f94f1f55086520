"""Text to textured mesh: optimise a fresh field under the prompt, then export it."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

import torch

from backend.export.export_field import export_field, to_glb
from backend.field.grid_field import DenseGridField
from backend.guidance.methods import make_method
from backend.guidance.prior import DiffusionPrior
from backend.pipelines.distill_loop import LoopState, distill
from backend.pipelines.naming import mesh_name
from backend.pipelines.presets import DistillConfig
from backend.pipelines.prompt_guidance import PromptEmbeddings, prompt_guidance
from backend.render.cameras import sample_cameras
from protocol.messages import IDENTITY, GenerateRequest, Preview, Progress, Result, ResultMesh

EXPORT_ETA_S = 8.0
"""Rough seconds the export takes on CPU (for the ETA while optimising)."""


def optimise_prompt_field(
    request: GenerateRequest,
    prior: DiffusionPrior,
    config: DistillConfig,
    should_cancel: Callable[[], bool],
    state: LoopState | None = None,
) -> Generator[Progress | Preview, None, DenseGridField]:
    """Optimise a new field for the request's prompt; yields events and returns the field."""
    torch.manual_seed(request.seed)
    generator = torch.Generator().manual_seed(request.seed)
    field = DenseGridField(config.grid).to(prior.device)
    method = make_method(request.method, prior, config)
    embeddings = PromptEmbeddings.encode(prior, request.prompt, request.negative_prompt)

    def sample_views(step: int, gen: torch.Generator):
        cameras = sample_cameras(config.views, config.cameras, gen)
        return cameras, prompt_guidance(prior, embeddings, cameras, config.guidance_scale)

    yield from distill(
        field, prior, method, config, sample_views, generator, should_cancel,
        state=state, eta_tail_s=EXPORT_ETA_S,
    )
    return field


def generate(
    request: GenerateRequest,
    prior: DiffusionPrior,
    config: DistillConfig,
    should_cancel: Callable[[], bool],
) -> Iterator[Progress | Preview | Result]:
    """The generate pipeline: events while optimising, an export stage, then the result."""
    field = yield from optimise_prompt_field(request, prior, config, should_cancel)
    yield Progress(stage="export", step=0, total=1, loss=None, eta_s=EXPORT_ETA_S)
    name = mesh_name(request.prompt)
    mesh = export_field(field, config.export, config.face_budget, config.texture_size, name=name)
    yield Progress(stage="export", step=1, total=1, loss=None, eta_s=0.0)
    yield Result(meshes=[ResultMesh(name=name, glb=to_glb(mesh), transform=IDENTITY)])
