"""Score Distillation Sampling (DreamFusion, Poole et al. 2022).

    grad_theta L_SDS = E_{t, eps} [ w(t) (eps_hat(x_t; y, t) - eps) dx/dtheta ]

with x = g(theta) the render (or its VAE latent), x_t = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t)
eps, eps_hat the classifier-free guided prediction, and no U-Net Jacobian.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

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
from backend.guidance.prior import DiffusionPrior


@dataclass(frozen=True)
class SDSConfig:
    """SDS hyperparameters."""

    guidance_scale: float = 100.0
    """s in eps_uncond + s (eps_cond - eps_uncond); DreamFusion uses 100."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)
    """Range of t."""
    weighting: Weighting = Weighting.SDS
    """w(t)."""
    grad_clip: float | None = None
    """Elementwise clamp of w(t)(eps_hat - eps); None for no clamp."""
    interval: GuidanceInterval | None = None
    """The guidance interval the guided noise follows; where it is active, its `low_weight`
    multiplies w(t) below `t_start` (None: w(t) as it is)."""


def sds_gradient(
    prior: DiffusionPrior,
    x0: torch.Tensor,
    guided_noise: GuidedNoise,
    t: torch.Tensor,
    noise: torch.Tensor,
    config: SDSConfig,
    interval: GuidanceInterval | None = None,
) -> torch.Tensor:
    """w(t) (eps_hat(x_t, t) - eps) for given t [B] and eps [B, C, h, w] (no grad); w(t) times
    the interval's weight where an `interval` is given."""
    with torch.no_grad():
        x_t = prior.add_noise(x0.detach(), noise, t)
        eps_hat = guided_noise(x_t, t)
        w = weight_of(config.weighting, prior.alphas_cumprod, t, interval)
        grad = w.to(x0.dtype) * (eps_hat - noise)
    return clip_gradient(grad, config.grad_clip)


class SDS:
    """DreamFusion's score distillation as a `DistillationMethod`."""

    name = "sds"

    def __init__(self, prior: DiffusionPrior, config: SDSConfig = SDSConfig()) -> None:
        self.prior = prior
        self.config = config
        self.guidance_scale = config.guidance_scale

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
        grad = sds_gradient(self.prior, x0, guided_noise, t, noise, self.config, interval)
        return DistillationStep.from_gradient(x0, grad, t)
