"""Variational Score Distillation (ProlificDreamer, Wang et al. 2023).

The 3D parameters are particles theta of a distribution mu(theta | y); each step alternates

    particles:  grad_theta = E_{t, eps, c} [ w(t) (eps_pretrained(x_t; y, t) - eps_phi(x_t; c, t))
                                             dx/dtheta ]
    LoRA:       min_phi E_{t, eps, c} || eps_phi(x_t; c, t) - eps ||^2   on the detached renders

with x = g(theta, c) the render of camera c, x_t = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) eps,
eps_pretrained the classifier-free guided prior (guidance 7.5, formula in
backend.guidance.prior) and eps_phi the camera-conditioned LoRA score model of the renders
(backend.guidance.lora). The LoRA loss uses the prior's own target (eps, or v for
v-prediction models), t ~ U[0, T), and drops the camera (c = 0) for 10% of the renders so
eps_phi also learns the camera-free score. As in threestudio, the particle gradient uses the
LoRA model before this step's LoRA update, w(t) = 1 - alpha_bar_t, and t ~ U[0.02, 0.98]
(threestudio's prolificdreamer config; the paper's annealing of t_max to 0.5 is optional,
`VSDConfig.timesteps`). The LoRA's text input is the prompt (threestudio), so it starts as the
pretrained model for that prompt.

Several particles: each is its own field, optimised in turn by the pipeline
(backend.pipelines.particles) through the same `VSD` object, so eps_phi learns the renders of
all of them.

The LoRA lives on the prior's shared U-Net: use `VSD` as a context manager (or call `close()`)
so it leaves the prior when the job ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from backend.guidance.distillation import (
    DistillationStep,
    GuidedNoise,
    TimestepSchedule,
    Weighting,
    clip_gradient,
    timesteps_for,
    weight_of,
)
from backend.guidance.guidance_interval import GuidanceInterval, interval_at
from backend.guidance.lora import CameraLoRA
from backend.guidance.precision import NonFiniteGuard, ScaledOptimiser, synchronised_clock
from backend.guidance.prior import DiffusionPrior

LORA_NON_FINITE_LIMIT = 20
"""LoRA steps in a row with a non-finite gradient before the job fails. Under fp16 a too-high
loss scale skips a step and halves the scale, so a handful in a row is normal at the start; 20
halvings (a million-fold) that never give a finite gradient mean a real NaN."""


@dataclass(frozen=True)
class VSDConfig:
    """VSD hyperparameters (ProlificDreamer / threestudio defaults unless noted)."""

    guidance_scale: float = 7.5
    """s of the pretrained prediction eps_u + s (eps_c - eps_u); ProlificDreamer 7.5."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)
    """t of the particle gradient: U[0.02, 0.98] throughout, as threestudio's prolificdreamer
    config runs it (`max_step_percent_annealed: 0.98`, annealing "temporarily disabled"; the
    paper anneals t_max to 0.5 after 5,000 of 25,000 steps). With the built-in model's recipe,
    "a red cube" (seed 4) came out red (0.95, 0.04, 0.06) without annealing and dull red (0.71,
    0.06, 0.07) with t_max 0.5 from 20% of the run, same shape (fill 0.885) and size (0.79)."""
    weighting: Weighting = Weighting.SDS
    """w(t) of the particle gradient (threestudio: 1 - alpha_bar_t)."""
    grad_clip: float | None = None
    """Elementwise clamp of the particle gradient; None for no clamp."""
    lora_rank: int = 4
    """Rank r of the LoRA adapters (threestudio 4)."""
    lora_lr: float = 1e-3
    """Adam learning rate of the LoRA and the camera MLP. ProlificDreamer uses 1e-4 on Stable
    Diffusion. Measured with tiny-shapes (renders of the start blob, 4 views at 32x32, loss on
    fixed draws): after 30 LoRA steps the loss falls 1.2% at 1e-4, 9% at 1e-3, and at 1e-2 it
    falls 21% by step 20, then rises again. 1e-4 leaves the LoRA nearly untrained in a
    150-step CPU run, hence 1e-3."""
    camera_dropout: float = 0.1
    """Share of renders whose camera condition is dropped (c = 0) in the LoRA loss."""
    lora_prompt: bool = True
    """The LoRA's text input is the job's prompt (threestudio), not the empty prompt."""
    interval: GuidanceInterval | None = None
    """The guidance interval the guided noise follows; where it is active, its `low_weight`
    multiplies w(t) below `t_start`, as in SDS (None: w(t) as it is)."""


def vsd_gradient(
    prior: DiffusionPrior,
    lora: CameraLoRA,
    x0: torch.Tensor,
    guided_noise: GuidedNoise,
    c2w: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    config: VSDConfig,
    interval: GuidanceInterval | None = None,
) -> torch.Tensor:
    """w(t) (eps_pretrained_cfg(x_t, t) - eps_phi(x_t, t, c)) [B, C, h, w] for given t [B] and
    eps [B, C, h, w]; x0 [B, C, h, w], c2w [B, 4, 4] (no grad); w(t) times the interval's weight
    where an `interval` is given."""
    with torch.no_grad():
        x_t = prior.add_noise(x0.detach(), noise, t)
        eps_pretrained = guided_noise(x_t, t)
        eps_phi = lora.predict_noise(x_t, t, c2w)
        w = weight_of(config.weighting, prior.alphas_cumprod, t, interval)
        grad = w.to(x0.dtype) * (eps_pretrained - eps_phi)
    return clip_gradient(grad, config.grad_clip)


def lora_loss(
    prior: DiffusionPrior,
    lora: CameraLoRA,
    x0: torch.Tensor,
    c2w: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """The standard diffusion loss of the LoRA model, mean || out_phi(x_t, t, c) - target ||^2,
    on detached renders x0 [B, C, h, w] with cameras c2w [B, 4, 4] (zero rows = dropped)."""
    x0 = x0.detach()
    x_t = prior.add_noise(x0, noise, t)
    out = lora.model_output(x_t, t, c2w)
    return F.mse_loss(out.float(), prior.training_target(x0, noise, t).float())


class VSD:
    """ProlificDreamer's variational score distillation as a `DistillationMethod`."""

    name = "vsd"

    def __init__(
        self, prior: DiffusionPrior, config: VSDConfig = VSDConfig(), prompt: str = ""
    ) -> None:
        """`prompt`: the job's prompt, the LoRA's text input when `config.lora_prompt`."""
        self.prior = prior
        self.config = config
        self.guidance_scale = config.guidance_scale
        self.lora = CameraLoRA(prior, config.lora_rank, prompt if config.lora_prompt else "")
        self.optimiser = ScaledOptimiser(
            torch.optim.Adam(self.lora.trainable_parameters, lr=config.lora_lr),
            prior.dtype,
            prior.device,
            NonFiniteGuard("vsd's LoRA", prior.precision, LORA_NON_FINITE_LIMIT, consecutive=True),
        )
        """Adam on the fp32 LoRA weights, its loss scaled under fp16."""
        self.last_lora_loss = float("nan")
        """The LoRA loss of the latest step (before its update)."""

    def train_lora(self, x0: torch.Tensor, c2w: torch.Tensor, generator: torch.Generator) -> float:
        """One Adam step of the LoRA on renders x0 [B, C, h, w] (detached) of cameras c2w
        [B, 4, 4]: t ~ U[0, T), fresh noise, camera dropped with p = camera_dropout."""
        b = x0.shape[0]
        t = torch.randint(0, self.prior.num_train_timesteps, (b,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        keep = torch.rand(b, generator=generator) >= self.config.camera_dropout
        cameras = c2w * keep.to(c2w.device, c2w.dtype).view(-1, 1, 1)
        loss = lora_loss(self.prior, self.lora, x0, cameras, t.to(x0.device), noise)
        self.optimiser.step(loss)
        self.last_lora_loss = float(loss.detach())
        return self.last_lora_loss

    def step(
        self,
        x0: torch.Tensor,
        guided_noise: GuidedNoise,
        c2w: torch.Tensor,
        progress: float,
        generator: torch.Generator,
    ) -> DistillationStep:
        t = timesteps_for(
            self.config.timesteps, self.prior.num_train_timesteps, x0, progress, generator
        )
        noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        interval = interval_at(self.config.interval, progress)
        grad = vsd_gradient(
            self.prior, self.lora, x0, guided_noise, c2w, t, noise, self.config, interval
        )
        start = synchronised_clock(self.prior.device)
        self.train_lora(x0, c2w, generator)
        lora_ms = 1000 * (synchronised_clock(self.prior.device) - start)
        step = DistillationStep.from_gradient(x0, grad, t)
        step.section_ms["lora"] = lora_ms
        return step

    def close(self) -> None:
        """Take the LoRA off the shared prior (idempotent)."""
        self.lora.close()

    def __enter__(self) -> VSD:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
