"""What every score-distillation method shares: the timestep draw, the weighting w(t), the
reparameterised loss that injects a chosen gradient into the renders, and the interface the
optimisation loop calls (`DistillationMethod`)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from backend.guidance.guidance_interval import GuidanceInterval

GuidedNoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(x_t [B, C, h, w], t [B]) -> classifier-free guided eps_hat [B, C, h, w].

A closure over the prompt embeddings (one prompt, view-dependent prompts, or the
mask-combined prompts of a composed scene)."""


class Weighting(enum.Enum):
    """w(t) of the distillation gradient."""

    SDS = "sds"
    """DreamFusion: w(t) = sigma_t^2 = 1 - alpha_bar_t."""
    UNIFORM = "uniform"
    """w(t) = 1."""
    SNR_SQRT = "snr_sqrt"
    """w(t) = sqrt(alpha_bar_t) * sqrt(1 - alpha_bar_t) (favours middle noise levels)."""


def weight_of(
    weighting: Weighting,
    alphas_cumprod: torch.Tensor,
    t: torch.Tensor,
    interval: GuidanceInterval | None = None,
) -> torch.Tensor:
    """[B] integer t -> [B, 1, 1, 1] weights w(t), times a guidance interval's weight below its
    t_start when `interval` is given (`backend.guidance.guidance_interval`)."""
    a = alphas_cumprod[t]
    if weighting is Weighting.SDS:
        w = 1.0 - a
    elif weighting is Weighting.UNIFORM:
        w = torch.ones_like(a)
    else:
        w = a.sqrt() * (1.0 - a).sqrt()
    w = w.view(-1, 1, 1, 1)
    if interval is not None:
        w = w * interval.weight(t, alphas_cumprod.shape[0]).to(w.device)
    return w


@dataclass(frozen=True)
class TimestepSchedule:
    """t ~ U[t_min, t_max] as fractions of the training timesteps; t_max may anneal linearly."""

    t_min: float = 0.02
    """Lowest fraction of the T training timesteps (DreamFusion 0.02)."""
    t_max: float = 0.98
    """Highest fraction at the start (DreamFusion 0.98)."""
    t_max_end: float | None = None
    """If set, t_max falls linearly to this by `anneal_until` of the run (ProlificDreamer
    0.98 -> 0.5)."""
    anneal_until: float = 0.2
    """Fraction of the run over which t_max anneals."""

    def bounds(self, progress: float) -> tuple[float, float]:
        """(t_min, t_max) at run progress in [0, 1]."""
        if self.t_max_end is None:
            return self.t_min, self.t_max
        k = min(1.0, progress / max(self.anneal_until, 1e-8))
        return self.t_min, self.t_max + k * (self.t_max_end - self.t_max)


def sample_timesteps(
    schedule: TimestepSchedule,
    progress: float,
    num_train_timesteps: int,
    batch: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """[B] integer timesteps t ~ U[t_min T, t_max T]."""
    lo, hi = schedule.bounds(progress)
    t_lo = int(lo * num_train_timesteps)
    t_hi = max(t_lo + 1, int(hi * num_train_timesteps))
    return torch.randint(t_lo, t_hi, (batch,), generator=generator)


def timesteps_for(
    schedule: TimestepSchedule,
    num_train_timesteps: int,
    x0: torch.Tensor,
    progress: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """[B] timesteps for the renders x0 [B, ...] at run progress, on x0's device."""
    t = sample_timesteps(schedule, progress, num_train_timesteps, x0.shape[0], generator)
    return t.to(x0.device)


def gradient_injection_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A loss whose gradient w.r.t. `x` [B, ...] is exactly `grad` / B:

    target = (x - grad).detach();  L = 0.5 * ||x - target||^2 / B  =>  dL/dx = grad / B.
    """
    target = (x - grad).detach()
    return 0.5 * torch.nn.functional.mse_loss(x, target, reduction="sum") / x.shape[0]


def clip_gradient(grad: torch.Tensor, clip: float | None) -> torch.Tensor:
    """An optional elementwise clamp to [-clip, clip]. A NaN stays a NaN: non-finite gradients
    are counted by the loop (`backend.guidance.precision.NonFiniteGuard`), never zeroed here."""
    return grad if clip is None else grad.clamp(-clip, clip)


@dataclass
class DistillationStep:
    """What one method step returns: the loss to backpropagate into the renders (and whatever
    the method trains itself), plus numbers for progress reports."""

    loss: torch.Tensor
    grad_norm: float
    timesteps: torch.Tensor
    section_ms: dict[str, float] = field(default_factory=dict)
    """Milliseconds of named parts of the step the loop reports apart from the U-Net's
    forwards (VSD: "lora", its update)."""

    @classmethod
    def from_gradient(
        cls, x0: torch.Tensor, grad: torch.Tensor, t: torch.Tensor
    ) -> DistillationStep:
        """The step that injects the method's gradient `grad` into the renders x0 [B, ...]
        (`gradient_injection_loss`), drawn at timesteps t [B]."""
        return cls(
            loss=gradient_injection_loss(x0, grad), grad_norm=float(grad.norm()), timesteps=t
        )


class Guide(Protocol):
    """What the optimisation loop needs of its frozen 2D model: a diffusion prior
    (`backend.guidance.prior.DiffusionPrior`) or CLIP (`backend.guidance.clip_model`)."""

    device: torch.device

    @property
    def precision(self) -> str:
        """ "fp32", "fp16" or "bf16" (for the non-finite guard's message)."""
        ...

    def encode_images(self, rgb: torch.Tensor) -> torch.Tensor:
        """Renders [B, 3, H, W] in [0, 1] -> what the method takes as x0, differentiably (a
        diffusion prior's model space, CLIP's image embeddings)."""
        ...


class DistillationMethod(Protocol):
    """One guidance method (sds.py, vsd.py, sjc.py, dream_fields.py)."""

    name: str
    """The method's name in requests ("sds", "vsd", "sjc", "clip"), for messages."""
    guidance_scale: float

    def step(
        self,
        x0: torch.Tensor,
        guided_noise: GuidedNoise | None,
        c2w: torch.Tensor,
        progress: float,
        generator: torch.Generator,
    ) -> DistillationStep:
        """x0: [B, C, h, w] renders in model space (with grad; CLIP: [B, D] image
        embeddings); guided_noise: None for CLIP; c2w: [B, 4, 4] cameras; progress: fraction
        of the run done."""
        ...
