"""The optimisation loop every pipeline shares: render random views, encode them into the
prior's space, take one distillation step, add the regularisers, update, report.

It is a generator of protocol events (Progress each step, Preview every N steps) and checks
for cancellation between steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from backend.guidance.distillation import DistillationMethod, GuidedNoise
from backend.guidance.prior import DiffusionPrior
from backend.pipelines.cancel import JobCancelled
from backend.pipelines.presets import DistillConfig, RegulariserConfig
from backend.render.background import sample_backgrounds
from backend.render.cameras import Cameras
from backend.render.preview import preview_png
from backend.render.renderer import RenderableField, RenderOutput, render
from backend.render.shading import sample_shading_modes
from protocol.messages import Preview, Progress

ViewSampler = Callable[[int, torch.Generator], tuple[Cameras, GuidedNoise]]
"""(step, generator) -> the step's cameras and the guided noise predictor for them."""

Renderer = Callable[..., RenderOutput]
"""(field, cameras, height, width, modes, backgrounds, RenderConfig, ShadingConfig, generator)
-> RenderOutput, like `backend.render.renderer.render` (the default)."""

StepSubject = Callable[[int], RenderableField]
"""step -> what that step renders: `field` itself, or a part of it (one object of a composed
scene) whose parameters are among `field.parameters()`. The step's smoothing is the subject's
(when it has a `total_variation`), so the parts it does not show get no gradient at all and
Adam leaves them, and their moment estimates, as they are."""


@dataclass
class LoopState:
    """Running numbers of a loop, readable after it ends (benchmarks, tests)."""

    step: int = 0
    loss: float = float("nan")
    render_ms: float = 0.0
    """Total render forward+backward milliseconds."""
    guidance_ms: float = 0.0
    """Total milliseconds in encode + distillation step (U-Net forwards)."""


def learning_rate(config: DistillConfig, progress: float) -> float:
    """The rate at run progress p in [0, 1]: `lr` * (`lr_end` / `lr`) ** p, or `lr` throughout
    when `lr_end` is None."""
    if config.lr_end is None:
        return config.lr
    return config.lr * (config.lr_end / config.lr) ** progress


def run_progress(step: int, steps: int) -> float:
    """Fraction of a run of `steps` steps done at `step` (0 at the first, 1 at the last)."""
    return step / max(1, steps - 1)


class Smoothable(Protocol):
    """A field with grid smoothing terms (`backend.field.grid_field.DenseGridField`)."""

    def total_variation(
        self, density_eps: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def smoothing_loss(field: Smoothable, reg: RegulariserConfig) -> torch.Tensor:
    """The grid's total variation under `reg`: lambda_tv TV_2(albedo) plus, for the raw density,
    lambda_edge TV_c(s) when `reg.edge_total_variation` > 0, else lambda_tv TV_2(s)."""
    edge = reg.edge_total_variation > 0
    density, albedo = field.total_variation(reg.edge_total_variation_eps if edge else None)
    density_weight = reg.edge_total_variation if edge else reg.total_variation
    return density_weight * density + reg.total_variation * albedo


def distill(
    field: torch.nn.Module,
    prior: DiffusionPrior,
    method: DistillationMethod,
    config: DistillConfig,
    sample_views: ViewSampler,
    generator: torch.Generator,
    should_cancel: Callable[[], bool],
    stage: str = "optimise",
    after_step: Callable[[], None] | None = None,
    state: LoopState | None = None,
    eta_tail_s: float = 0.0,
    subject: StepSubject | None = None,
    renderer: Renderer = render,
    preview: Callable[[torch.nn.Module], bytes] = preview_png,
) -> Iterator[Progress | Preview]:
    """Optimise `field` for `config.steps` steps under `method`.

    `after_step` runs after each update (e.g. to restore parameters outside an edit region);
    `eta_tail_s` is added to the ETA for work after the loop (export); `subject` picks what
    each step renders and smooths (default: `field`; `StepSubject`), in the frame of the
    cameras `sample_views` returns. Previews always show the whole `field`. `renderer` and
    `preview` (PNG bytes of `field`) default to the volume renderer's; texture editing passes
    the mesh renderer's.
    """
    state = state or LoopState()
    device = prior.device
    optimiser = torch.optim.Adam(field.parameters(), lr=config.lr, betas=(0.9, 0.99), eps=1e-15)
    reg = config.regularisers
    start = time.perf_counter()
    for step in range(config.steps):
        if should_cancel():
            raise JobCancelled()
        progress = run_progress(step, config.steps)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(config, progress)
        cameras, guided_noise = sample_views(step, generator)
        cameras = cameras.to(device)
        b = len(cameras)
        modes = sample_shading_modes(b, config.shading, generator)
        backgrounds = sample_backgrounds(b, generator)

        shown = field if subject is None else subject(step)
        t0 = time.perf_counter()
        out = renderer(
            shown,
            cameras,
            config.resolution,
            config.resolution,
            modes,
            backgrounds,
            config.render,
            config.shading,
            generator,
        )
        t1 = time.perf_counter()
        x0 = prior.encode_images(out.rgb)
        distilled = method.step(x0, guided_noise, cameras.c2w, progress, generator)
        t2 = time.perf_counter()

        lambda_orient = reg.orientation_start + progress * (
            reg.orientation_end - reg.orientation_start
        )
        # Regularisers are per-pixel sums over each image, on the scale of the distillation
        # loss (a sum over the image's elements divided by the batch).
        pixels = out.opacity.shape[-1] * out.opacity.shape[-2]
        loss = distilled.loss + pixels * (
            reg.sparsity * out.opacity.mean() + lambda_orient * out.orientation
        )
        smoothing = reg.total_variation > 0 or reg.edge_total_variation > 0
        if smoothing and hasattr(shown, "total_variation"):
            loss = loss + smoothing_loss(shown, reg)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if after_step is not None:
            after_step()
        t3 = time.perf_counter()

        state.step = step + 1
        state.loss = float(loss.detach())
        state.render_ms += 1000 * ((t1 - t0) + (t3 - t2))
        state.guidance_ms += 1000 * (t2 - t1)
        elapsed = time.perf_counter() - start
        eta = elapsed / (step + 1) * (config.steps - step - 1) + eta_tail_s
        yield Progress(stage=stage, step=step + 1, total=config.steps, loss=state.loss, eta_s=eta)
        last = step + 1 == config.steps
        if config.preview_every and ((step + 1) % config.preview_every == 0 or last):
            yield Preview(step=step + 1, png=preview(field))
