"""Locally conditioned diffusion (Po & Wetzstein, 3DV 2024): one noise prediction per image in
which each region follows its own prompt.

    eps_hat(x_t, t) = sum_i m_i * (eps(x_t, empty) + s * (eps(x_t, y_i) - eps(x_t, empty)))

m_i: ownership masks of the regions (the prompt boxes, then "none"), resampled to the model
space (latent size for latent models); y_i: the region's prompt; s: the guidance scale, or
s(t) under a guidance interval (`backend.guidance.guidance_interval`). A
region without a prompt contributes m_i * eps(x_t, empty). All prompts and the unconditional
branch go through the U-Net in one batch. The result is a `GuidedNoise`, so every
distillation method (SDS, VSD, SJC) takes it unchanged.

A camera-conditioned prior (`backend.guidance.camera_condition`) can be told, per region, the
camera c_i in that region's own frame; both of the region's predictions then use it:
m_i * (eps(x_t, empty, c_i) + s * (eps(x_t, y_i, c_i) - eps(x_t, empty, c_i))).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from backend.guidance.camera_condition import CAMERA_CONDITION_DIM
from backend.guidance.distillation import GuidedNoise
from backend.guidance.guidance_interval import GuidanceInterval, guidance_scale_at
from backend.guidance.prior import DiffusionPrior


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, P, H, W] masks -> [B, P, h, w]: area average when shrinking (a pixel's weights still
    sum to one), nearest when growing (one-hot stays one-hot)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    if masks.shape[-2] >= size[0] and masks.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(masks, size)
    return F.interpolate(masks, size=size, mode="nearest")


def local_conditioning(
    prior: DiffusionPrior,
    region_text: Sequence[torch.Tensor | None],
    uncond: torch.Tensor,
    masks: torch.Tensor,
    guidance_scale: float,
    region_camera: Sequence[torch.Tensor | None] | None = None,
    interval: GuidanceInterval | None = None,
) -> GuidedNoise:
    """The mask-combined guided noise of P regions (formula in the module docstring).

    Args:
        region_text: P entries, each [B, L, D] embeddings of y_i per view, or None for a region
            without a prompt.
        uncond: [B, L, D] embeddings of the unconditional (negative) prompt.
        masks: [B, P, H, W] ownership masks m_i at any resolution.
        guidance_scale: s.
        region_camera: for a camera-conditioned prior, P entries, each
            [B, CAMERA_CONDITION_DIM] camera conditions c_i of the views in region i's own frame
            (a rotated box sees the camera turned by its yaw), or None for "unknown". Each
            region's two predictions then use its c_i, so the unconditional one is made once per
            region. None, or a prior without camera input: one shared unconditional
            prediction (the paper's formula, 1 + P' rows).
        interval: where `guidance_scale` applies (None: at every t), as for one prompt.
    """
    if masks.shape[1] != len(region_text):
        raise ValueError(f"masks: {masks.shape[1]} channels for {len(region_text)} regions")
    if region_camera is not None and len(region_camera) != len(region_text):
        raise ValueError(
            f"region_camera: {len(region_camera)} entries for {len(region_text)} regions"
        )
    # Rows of the one batched forward, as (text, camera or None = unknown), and each region's
    # rows. Without per-region cameras (or for a prior that takes none) every region shares one
    # unconditional row.
    per_region = region_camera is not None and prior.camera_conditioned
    cameras = list(region_camera) if per_region else [None] * len(region_text)
    rows: list[tuple[torch.Tensor, torch.Tensor | None]] = [] if per_region else [(uncond, None)]
    uncond_row: list[int] = []
    cond_row: list[int | None] = []
    for text, camera in zip(region_text, cameras, strict=True):
        if per_region:
            rows.append((uncond, camera))
        uncond_row.append(len(rows) - 1 if per_region else 0)
        if text is not None:
            rows.append((text, camera))
        cond_row.append(None if text is None else len(rows) - 1)
    unknown = torch.zeros(uncond.shape[0], CAMERA_CONDITION_DIM, device=uncond.device)
    text_batch = torch.cat([text for text, _ in rows])  # [K B, L, D]
    camera_batch = torch.cat(
        [unknown if camera is None else camera.to(uncond.device) for _, camera in rows]
    )  # [K B, CAMERA_CONDITION_DIM]

    def guided_noise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        k = len(rows)
        eps = prior.predict_noise(x_t.repeat(k, 1, 1, 1), t.repeat(k), text_batch, camera_batch)
        eps = eps.view(k, *x_t.shape)
        m = resize_masks(masks.to(x_t.device, eps.dtype), tuple(x_t.shape[-2:]))  # m_i
        s = guidance_scale_at(guidance_scale, interval, t, prior.num_train_timesteps, eps.dtype)
        combined = torch.zeros_like(eps[0])
        for i in range(len(region_text)):
            region_eps = eps[uncond_row[i]]  # eps(x_t, empty, c_i)
            if cond_row[i] is not None:
                eps_cond = eps[cond_row[i]]  # eps(x_t, y_i, c_i)
                region_eps = region_eps + s * (eps_cond - region_eps)
            combined = combined + m[:, i : i + 1] * region_eps
        return combined

    return guided_noise
