"""Locally conditioned diffusion (Po & Wetzstein, 3DV 2024): one noise prediction per image in
which each region follows its own prompt.

    eps_hat(x_t, t) = sum_i m_i * (eps(x_t, empty) + s * (eps(x_t, y_i) - eps(x_t, empty)))

m_i: ownership masks of the regions (the prompt boxes, then "none"), resampled to the model
space (latent size for latent models); y_i: the region's prompt; s: the guidance scale. A
region without a prompt contributes m_i * eps(x_t, empty). All prompts and the unconditional
branch go through the U-Net in one batch. The result is a `GuidedNoise`, so every
distillation method (SDS, VSD, SJC) takes it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from backend.guidance.distillation import GuidedNoise
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
) -> GuidedNoise:
    """The mask-combined guided noise of P regions (formula in the module docstring).

    Args:
        region_text: P entries, each [B, L, D] embeddings of y_i per view, or None for a region
            without a prompt.
        uncond: [B, L, D] embeddings of the unconditional (negative) prompt.
        masks: [B, P, H, W] ownership masks m_i at any resolution.
        guidance_scale: s.
    """
    if masks.shape[1] != len(region_text):
        raise ValueError(f"masks: {masks.shape[1]} channels for {len(region_text)} regions")
    prompted = [i for i, text in enumerate(region_text) if text is not None]
    text = torch.cat([uncond, *(region_text[i] for i in prompted)])  # [(1 + P') B, L, D]

    def guided_noise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        k = 1 + len(prompted)
        eps = prior.predict_noise(x_t.repeat(k, 1, 1, 1), t.repeat(k), text)
        eps = eps.view(k, *x_t.shape)
        eps_uncond = eps[0]  # eps(x_t, empty)
        m = resize_masks(masks.to(x_t.device, eps.dtype), tuple(x_t.shape[-2:]))  # m_i
        combined = torch.zeros_like(eps_uncond)
        for i in range(len(region_text)):
            region_eps = eps_uncond
            if i in prompted:
                eps_cond = eps[1 + prompted.index(i)]  # eps(x_t, y_i)
                region_eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
            combined = combined + m[:, i : i + 1] * region_eps
        return combined

    return guided_noise
