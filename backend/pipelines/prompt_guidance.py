"""Guided noise predictors for plain prompts: view-dependent embeddings computed once per job,
selected per view, the negative prompt as the unconditional branch (as Stable Diffusion
pipelines do), and each view's camera condition for priors that take one."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.guidance.camera_condition import camera_condition
from backend.guidance.distillation import GuidedNoise
from backend.guidance.guidance_interval import GuidanceInterval, guidance_scale_at, interval_at
from backend.guidance.prior import DiffusionPrior
from backend.guidance.view_prompts import view_prompts, views_of
from backend.pipelines.distill_loop import ViewSampler, run_progress
from backend.pipelines.presets import DistillConfig
from backend.render.cameras import Cameras, sample_cameras


@dataclass
class PromptEmbeddings:
    """Embeddings of one prompt: per view class [4, L, D], and the unconditional [1, L, D]."""

    per_view: torch.Tensor
    uncond: torch.Tensor

    @classmethod
    def encode(
        cls, prior: DiffusionPrior, prompt: str, negative_prompt: str = ""
    ) -> PromptEmbeddings:
        """Encode the four view-suffixed prompts and the negative prompt once."""
        return cls(prior.encode_text(view_prompts(prompt)), prior.encode_text([negative_prompt]))

    def for_cameras(self, cameras: Cameras) -> torch.Tensor:
        """[B, L, D] conditional embeddings matching each camera's view class."""
        views = views_of(cameras.elevation, cameras.azimuth).to(self.per_view.device)
        return self.per_view[views]


def prompt_guidance(
    prior: DiffusionPrior,
    embeddings: PromptEmbeddings,
    cameras: Cameras,
    guidance_scale: float,
    interval: GuidanceInterval | None = None,
) -> GuidedNoise:
    """eps_cfg(x_t, t) for the cameras' view-dependent prompts, told the cameras (in the frame
    of the object the views render); `guidance_scale` applies where `interval` puts it (None:
    at every t)."""
    cond = embeddings.for_cameras(cameras)
    uncond = embeddings.uncond.expand_as(cond)
    camera = camera_condition(cameras.c2w)

    def guided_noise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scale = guidance_scale_at(guidance_scale, interval, t, prior.num_train_timesteps, x_t.dtype)
        return prior.guided_noise(x_t, t, cond, uncond, scale, camera)

    return guided_noise


def prompt_view_sampler(
    prior: DiffusionPrior, embeddings: PromptEmbeddings, config: DistillConfig
) -> ViewSampler:
    """The `distill` view sampler of a single-prompt run: `config.views` random cameras per
    step, each guided by its view-dependent prompt (following `config.guidance_interval` where
    it is active)."""

    def sample_views(step: int, gen: torch.Generator) -> tuple[Cameras, GuidedNoise]:
        cameras = sample_cameras(config.views, config.cameras, gen)
        interval = interval_at(config.guidance_interval, run_progress(step, config.steps))
        return cameras, prompt_guidance(prior, embeddings, cameras, config.guidance_scale, interval)

    return sample_views


def camera_view_sampler(config: DistillConfig) -> ViewSampler:
    """The `distill` view sampler of CLIP guidance: `config.views` random cameras per step,
    no noise predictor."""

    def sample_views(step: int, gen: torch.Generator) -> tuple[Cameras, None]:
        return sample_cameras(config.views, config.cameras, gen), None

    return sample_views
