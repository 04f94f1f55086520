"""DreamFusion shading (paper section 3.1): albedo, lit colour, or textureless.

colour = albedo * (ambient + diffuse * max(0, n . l)), with l the unit vector from the surface
point toward a point light. "Textureless" replaces albedo by white, so the prior judges the
shape alone; "albedo" skips lighting.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch


class ShadingMode(enum.IntEnum):
    """How a render is shaded."""

    LIT = 0
    ALBEDO = 1
    TEXTURELESS = 2


@dataclass(frozen=True)
class ShadingConfig:
    """Light model and the odds of each shading mode per rendered view."""

    ambient: float = 0.3
    """Ambient light intensity (fraction of albedo always visible)."""
    diffuse: float = 0.7
    """Intensity of the diffuse point light."""
    albedo_prob: float = 0.2
    """Chance that a view is rendered as plain albedo (no lighting)."""
    textureless_prob: float = 0.1
    """Chance that a view is rendered lit with white albedo (shape only)."""


def sample_shading_modes(
    batch: int, config: ShadingConfig, generator: torch.Generator
) -> torch.Tensor:
    """[B] ShadingMode values drawn with the configured odds."""
    u = torch.rand(batch, generator=generator)
    modes = torch.full((batch,), int(ShadingMode.LIT), dtype=torch.long)
    modes[u < config.albedo_prob + config.textureless_prob] = int(ShadingMode.TEXTURELESS)
    modes[u < config.albedo_prob] = int(ShadingMode.ALBEDO)
    return modes


def shade(
    albedo: torch.Tensor,
    normals: torch.Tensor,
    points: torch.Tensor,
    light_position: torch.Tensor,
    modes: torch.Tensor,
    config: ShadingConfig,
) -> torch.Tensor:
    """Shade surface samples.

    Args:
        albedo: [B, ..., 3] in [0, 1]; normals: [B, ..., 3] unit; points: [B, ..., 3].
        light_position: [B, 3]; modes: [B] ShadingMode values.
    Returns:
        [B, ..., 3] shaded colour.
    """
    extra = (1,) * (albedo.dim() - 2)
    light = light_position.view(light_position.shape[0], *extra, 3)
    to_light = torch.nn.functional.normalize(light - points, dim=-1)
    lambert = (normals * to_light).sum(-1, keepdim=True).clamp(min=0.0)
    intensity = config.ambient + config.diffuse * lambert
    mode = modes.view(modes.shape[0], *extra, 1)
    base = torch.where(mode == int(ShadingMode.TEXTURELESS), torch.ones_like(albedo), albedo)
    lit = base * intensity
    return torch.where(mode == int(ShadingMode.ALBEDO), albedo, lit)
