"""Sample grid of the built-in model: one row per shape, one column per colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler
from PIL import Image

from backend.builtin_model import vocabulary
from backend.builtin_model.dataset import training_views
from backend.guidance.camera_condition import camera_condition
from backend.guidance.prior import DiffusionPrior

GRID_VIEW_DEG = (30.0, 35.0)
"""(elevation, azimuth) of the camera the grid's samples are conditioned on: a three-quarter
view from above, which shows a cube's three faces and a torus's hole."""


@torch.no_grad()
def sample_images(
    prior: DiffusionPrior,
    prompts: list[str],
    seed: int,
    steps: int = 30,
    guidance_scale: float = 4.0,
    camera: torch.Tensor | None = None,
) -> torch.Tensor:
    """DDIM samples ([B, 3, H, W] in [0, 1]) for prompts, classifier-free guided; camera:
    [B, 3] conditions for a camera-conditioned prior (None: unknown)."""
    # The prior returns epsilon whatever the model predicts, so DDIM steps on epsilon.
    ddim = DDIMScheduler.from_config(prior.scheduler.config, prediction_type="epsilon")
    ddim.set_timesteps(steps)
    cond = prior.encode_text(prompts)
    uncond = prior.encode_text([""]).expand_as(cond)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(prompts), 3, prior.resolution, prior.resolution, generator=generator)
    for t in ddim.timesteps:
        eps = prior.guided_noise(x, t.expand(len(prompts)), cond, uncond, guidance_scale, camera)
        x = ddim.step(eps, t, x).prev_sample
    return ((x + 1) / 2).clamp(0, 1)


def save_sample_grid(model_dir: Path, out_png: Path, seed: int = 0, cell: int = 64) -> None:
    """Write a PNG grid: rows = shapes, columns = colours, prompt "a {colour} {shape}"."""
    prior = DiffusionPrior.load(str(model_dir), device="cpu")
    prompts = [f"a {c} {s}" for s in vocabulary.SHAPES for c in vocabulary.COLOURS]
    n = len(prompts)
    elevation, azimuth = GRID_VIEW_DEG
    view = training_views(torch.full((n,), elevation), torch.full((n,), azimuth))
    images = sample_images(prior, prompts, seed, camera=camera_condition(view.c2w))
    rows, cols = len(vocabulary.SHAPES), len(vocabulary.COLOURS)
    arr = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    h = w = prior.resolution
    grid = arr.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
    image = Image.fromarray(grid).resize((cols * cell, rows * cell), Image.NEAREST)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    image.save(out_png)
