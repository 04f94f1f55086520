"""The optimisation loop every pipeline shares: render random views, encode them into the
prior's space, take one distillation step, add the regularisers, update, report.

It is a generator of protocol events (Progress each step, Preview every N steps) and checks
for cancellation between steps.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from backend.guidance.distillation import DistillationMethod, Guide, GuidedNoise
from backend.guidance.dream_fields import transmittance_loss
from backend.guidance.precision import NonFiniteGuard, all_finite, synchronised_clock
from backend.pipelines.cancel import JobCancelled
from backend.pipelines.presets import DistillConfig, RegulariserConfig
from backend.render.background import sample_backgrounds
from backend.render.cameras import Cameras
from backend.render.pattern_backgrounds import sample_pattern_backgrounds
from backend.render.preview import preview_png
from backend.render.renderer import RenderableField, RenderOutput, render
from backend.render.shading import sample_shading_modes
from protocol.messages import Preview, Progress

ViewSampler = Callable[[int, torch.Generator], tuple[Cameras, GuidedNoise | None]]
"""(step, generator) -> the step's cameras and the guided noise predictor for them (None for
CLIP guidance, which predicts no noise)."""

Renderer = Callable[..., RenderOutput]
"""(field, cameras, height, width, modes, backgrounds, RenderConfig, ShadingConfig, generator)
-> RenderOutput, like `backend.render.renderer.render` (the default)."""

StepSubject = Callable[[int], RenderableField]
"""step -> what that step renders: `field` itself, or a part of it (one object of a composed
scene) whose parameters are among `field.parameters()`. The step's smoothing is the subject's
(when it has a `total_variation`), so the parts it does not show get no gradient at all and
Adam leaves them, and their moment estimates, as they are."""


STEP_SECTIONS = ("render", "encode", "guidance", "regularisers", "backward", "optimiser")
"""The parts of a step `LoopState.section_ms` times in order: the render's forward, the encode
into the prior's space (VAE forward for latent models), the method's step (U-Net forwards), the
regularisers' forward (sparsity, orientation, smoothing, a mesh's Laplacian and normal
consistency), the backward through all of it, the optimiser update. A method may report parts
of its step apart (`DistillationStep.section_ms`: VSD's "lora"), which then leave "guidance"."""


RENDER_SECTIONS = ("render", "backward", "optimiser")
"""The sections that make a step's render cost (forward, backward, update)."""


@dataclass
class LoopState:
    """Running numbers of a loop, readable after it ends (benchmarks, tests)."""

    step: int = 0
    loss: float = float("nan")
    section_ms: dict[str, float] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(STEP_SECTIONS, 0.0)
    )
    """Total milliseconds per `STEP_SECTIONS` part (CUDA work is synchronised before each
    reading, so the split is true on a GPU too)."""
    non_finite_steps: int = 0
    """Steps whose field gradient held a NaN or an inf (skipped; `NonFiniteGuard`)."""

    @property
    def render_ms(self) -> float:
        """Total render forward + backward (through encode) + optimiser milliseconds."""
        return sum(self.section_ms[k] for k in RENDER_SECTIONS)

    @property
    def guidance_ms(self) -> float:
        """Total milliseconds in encode + the method's step (U-Net forwards, VSD's LoRA)."""
        return sum(
            v
            for k, v in self.section_ms.items()
            if k not in RENDER_SECTIONS and k != "regularisers"
        )


def learning_rate(config: DistillConfig, progress: float) -> float:
    """The rate at run progress p in [0, 1]: `lr` * (`lr_end` / `lr`) ** p, or `lr` throughout
    when `lr_end` is None."""
    if config.lr_end is None:
        return config.lr
    return config.lr * (config.lr_end / config.lr) ** progress


def run_progress(step: int, steps: int) -> float:
    """Fraction of a run of `steps` steps done at `step` (0 at the first, 1 at the last)."""
    return step / max(1, steps - 1)


@runtime_checkable
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


@dataclass
class DistillRun:
    """One optimisation under a distillation method: what it optimises, and how it renders,
    reports and is stopped."""

    field: torch.nn.Module
    """What is optimised: a grid field, a composed scene, a texture model."""
    prior: Guide
    """The frozen 2D model: a diffusion prior, or CLIP for Dream Fields."""
    method: DistillationMethod
    """SDS, VSD, SJC or Dream Fields (`backend.pipelines.methods`)."""
    config: DistillConfig
    """Steps, views, resolution, learning rate and regularisers."""
    sample_views: ViewSampler
    """The step's cameras and guided noise predictor."""
    generator: torch.Generator
    """Every random draw of the run (cameras, shading, backgrounds, timesteps, noise)."""
    should_cancel: Callable[[], bool]
    """Checked before each step; true raises `JobCancelled`."""
    stage: str = "optimise"
    """The stage name of its Progress events."""
    after_step: Callable[[], None] | None = None
    """Runs after each update (an edit restores the voxels outside its region)."""
    state: LoopState | None = None
    """Running numbers, readable after the run (benchmarks); None: the run keeps its own."""
    eta_tail_s: float = 0.0
    """Seconds of work after the loop (export), added to the ETA."""
    subject: StepSubject | None = None
    """What each step renders and smooths (default: `field`), in the frame of the cameras
    `sample_views` returns; previews always show the whole `field`."""
    renderer: Renderer = render
    """The renderer (texture editing passes the mesh renderer)."""
    preview: Callable[[torch.nn.Module], bytes] = preview_png
    """PNG bytes of `field` for Preview events."""
    regularise: Callable[[torch.nn.Module], torch.Tensor] | None = None
    """A further regulariser loss of the step's subject (the mesh stage's Laplacian and
    normal consistency, `backend.pipelines.refine`); None: none."""


def distill(run: DistillRun) -> Iterator[Progress | Preview]:
    """Optimise `run.field` for `run.config.steps` steps under `run.method`, yielding a
    Progress event each step and a Preview every `preview_every` steps."""
    field, prior, method, config = run.field, run.prior, run.method, run.config
    sample_views, generator, subject = run.sample_views, run.generator, run.subject
    state = run.state or LoopState()
    device = prior.device
    optimiser = torch.optim.Adam(
        field.parameters(),
        lr=config.lr,
        betas=(0.9, 0.99),
        eps=1e-15,
        fused=config.fused_adam or None,
    )
    guard = NonFiniteGuard(f"method {method.name}", prior.precision, config.max_non_finite_steps)
    reg = config.regularisers
    start = time.perf_counter()
    for step in range(config.steps):
        if run.should_cancel():
            raise JobCancelled()
        progress = run_progress(step, config.steps)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(config, progress)
        cameras, guided_noise = sample_views(step, generator)
        cameras = cameras.to(device)
        b = len(cameras)
        modes = sample_shading_modes(b, config.shading, generator)
        backgrounds = sample_backgrounds(b, generator)
        if config.pattern_backgrounds:
            # Render over black, then composite: I = C + (1 - opacity) B (Dream Fields).
            patterns = sample_pattern_backgrounds(
                b, config.resolution, config.resolution, generator
            ).to(device)
            backgrounds = torch.zeros_like(backgrounds)

        shown = field if subject is None else subject(step)
        ticks = [synchronised_clock(device)]
        out = run.renderer(
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
        rgb = out.rgb
        if config.pattern_backgrounds:
            rgb = rgb + (1.0 - out.opacity) * patterns
        ticks.append(synchronised_clock(device))
        x0 = prior.encode_images(rgb)
        ticks.append(synchronised_clock(device))
        distilled = method.step(x0, guided_noise, cameras.c2w, progress, generator)
        ticks.append(synchronised_clock(device))

        lambda_orient = reg.orientation_start + progress * (
            reg.orientation_end - reg.orientation_start
        )
        # Regularisers are per-pixel sums over each image, on the scale of the distillation
        # loss (a sum over the image's elements divided by the batch).
        pixels = out.opacity.shape[-1] * out.opacity.shape[-2]
        loss = distilled.loss + pixels * (
            reg.sparsity * out.opacity.mean() + lambda_orient * out.orientation
        )
        if reg.transmittance > 0:
            tau = reg.transmittance_target.at(step)
            loss = loss + pixels * reg.transmittance * transmittance_loss(out.opacity, tau)
        smoothing = reg.total_variation > 0 or reg.edge_total_variation > 0
        if smoothing and isinstance(shown, Smoothable):
            loss = loss + smoothing_loss(shown, reg)
        if run.regularise is not None:
            loss = loss + run.regularise(shown)
        ticks.append(synchronised_clock(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        ticks.append(synchronised_clock(device))
        finite = all_finite(p.grad for p in field.parameters())
        if guard.check(finite, step + 1):
            optimiser.step()
        else:
            state.non_finite_steps += 1
        if run.after_step is not None:
            run.after_step()
        ticks.append(synchronised_clock(device))
        for section, (t0, t1) in zip(STEP_SECTIONS, itertools.pairwise(ticks), strict=True):
            state.section_ms[section] += 1000 * (t1 - t0)
        for section, ms in distilled.section_ms.items():
            state.section_ms[section] = state.section_ms.get(section, 0.0) + ms
            state.section_ms["guidance"] -= ms

        state.step = step + 1
        state.loss = float(loss.detach())
        elapsed = time.perf_counter() - start
        eta = elapsed / (step + 1) * (config.steps - step - 1) + run.eta_tail_s
        shown_loss = state.loss if finite and math.isfinite(state.loss) else None
        yield Progress(
            stage=run.stage, step=step + 1, total=config.steps, loss=shown_loss, eta_s=eta
        )
        last = step + 1 == config.steps
        if config.preview_every and ((step + 1) % config.preview_every == 0 or last):
            yield Preview(step=step + 1, png=run.preview(field), stage=run.stage)
