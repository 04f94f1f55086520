"""Score Jacobian Chaining (Wang et al. 2023) with Perturb-and-Average Scoring (PAAS).

SJC writes the chain rule of the 3D parameters through the render x = g(theta) and needs the
score grad_x log p(x) of the *clean* render, where a denoiser is out of distribution. PAAS
estimates it at one noise level sigma by perturbing x several times and averaging:

    score(x) ~= 1/K sum_k (D(x + sigma n_k; sigma) - x) / sigma^2,      n_k ~ N(0, I)

in the paper's variance-exploding (VE) notation: z = x + sigma n, D the denoiser (E[x | z]).

Mapping to our DDPM parameterisation (x_t = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) eps):

    sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)
    x_t     = sqrt(alpha_bar_t) z = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) n
              (so `prior.add_noise(x, n, t)` is the VE point z, rescaled; n plays eps)
    D(z)    = z - sigma_t eps_hat(x_t, t)          (SJC's adapt_sd.py does exactly this)
    (D(z) - x) / sigma_t^2 = (n - eps_hat(x_t, t)) / sigma_t

with eps_hat the classifier-free guided prediction. SJC (run_sjc.py, var_red=True) ascends
log p with the sigma-scaled score: it backpropagates -sigma * score = mean_k (eps_hat_k - n_k)
into the render, which is our gradient with w(t) = 1 (`Weighting.UNIFORM`). The sigma levels
are the model's 1,000 discrete ones without the 30 noisiest and the 10 cleanest (`us[30:-10]`),
i.e. t in [0.01, 0.97] T, drawn uniformly.

Representation: SJC optimises a dense voxel radiance field (100^3); that option is our
`backend.field.grid_field.DenseGridField`, the field every CPU preset already uses.
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
from backend.guidance.prior import DiffusionPrior


@dataclass(frozen=True)
class SJCConfig:
    """SJC hyperparameters."""

    guidance_scale: float = 100.0
    """s in eps_uncond + s (eps_cond - eps_uncond); SJC uses 100 with Stable Diffusion."""
    timesteps: TimestepSchedule = field(
        default_factory=lambda: TimestepSchedule(t_min=0.01, t_max=0.97)
    )
    """Range of the noise level, as timesteps (SJC: sigma levels us[30:-10] of 1,000)."""
    draws: int = 4
    """K, the noise draws PAAS averages at one sigma."""
    weighting: Weighting = Weighting.UNIFORM
    """w(t) on -sigma * score = mean_k (eps_hat_k - n_k); SJC's is 1."""
    grad_clip: float | None = None
    """Elementwise clamp of the gradient; None for no clamp."""


def noise_level(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """VE noise level sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t); [B] t -> [B, 1, 1, 1]."""
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return ((1.0 - a) / a).sqrt()


def paas_score(
    prior: DiffusionPrior,
    x0: torch.Tensor,
    guided_noise: GuidedNoise,
    t: torch.Tensor,
    noises: torch.Tensor,
) -> torch.Tensor:
    """PAAS estimate of grad_x log p_sigma(x) [B, C, h, w] at the clean renders x0 [B, C, h, w]:
    the mean over the K draws noises [K, B, C, h, w] of (D(x + sigma n_k) - x) / sigma^2, one
    sigma per view (t [B]). Each draw is one guided forward of all B views (a `GuidedNoise`
    takes the step's B views, so the K draws run as K batched forwards). No grad."""
    sigma = noise_level(prior.alphas_cumprod, t).to(x0.dtype)
    score = torch.zeros_like(x0)
    with torch.no_grad():
        x = x0.detach()
        for n in noises:
            eps_hat = guided_noise(prior.add_noise(x, n, t), t)
            # (D(z) - x) / sigma^2 with z = x + sigma n, D(z) = z - sigma eps_hat (module docstring)
            score += (n - eps_hat) / sigma
    return score / noises.shape[0]


def sjc_gradient(
    prior: DiffusionPrior,
    x0: torch.Tensor,
    guided_noise: GuidedNoise,
    t: torch.Tensor,
    noises: torch.Tensor,
    config: SJCConfig,
) -> torch.Tensor:
    """The gradient on the renders, -w(t) sigma_t PAAS(x0) [B, C, h, w] (= w(t) times the mean
    of eps_hat_k - n_k), for t [B] and noises [K, B, C, h, w]."""
    score = paas_score(prior, x0, guided_noise, t, noises)
    sigma = noise_level(prior.alphas_cumprod, t).to(x0.dtype)
    w = weight_of(config.weighting, prior.alphas_cumprod, t).to(x0.dtype)
    return clip_gradient(-w * sigma * score, config.grad_clip)


class SJC:
    """Score Jacobian Chaining with PAAS as a `DistillationMethod`."""

    name = "sjc"

    def __init__(self, prior: DiffusionPrior, config: SJCConfig = SJCConfig()) -> None:
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
        noises = torch.randn((self.config.draws, *x0.shape), generator=generator)
        grad = sjc_gradient(
            self.prior, x0, guided_noise, t, noises.to(x0.device, x0.dtype), self.config
        )
        return DistillationStep.from_gradient(x0, grad, t)
