"""Differentiable volume renderer of a density + albedo field with DreamFusion shading.

Per ray: clip to the field's bounding cube, a coarse pass (no gradient) of stratified samples,
importance samples drawn from its weights (as mip-NeRF 360's proposal sampling, the
differentiable pass uses only these: on CPU it is the costly part), then density, albedo and
normals from the field, shading per sample (lit / albedo / textureless), alpha compositing
over the view's background. With fine_samples = 0 the stratified samples are rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from backend.geometry.field_samples import FieldSamples
from backend.render.cameras import Cameras, camera_rays
from backend.render.compositing import compositing_weights, sample_deltas
from backend.render.ray_sampling import importance_samples, ray_box_interval, stratified_samples
from backend.render.shading import ShadingConfig, shade


class RenderableField(Protocol):
    """What the renderer needs of a field (DenseGridField, composed scenes)."""

    bound: float

    def __call__(self, points: torch.Tensor) -> FieldSamples: ...

    def density(self, points: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class RenderConfig:
    """Samples per ray."""

    coarse_samples: int = 32
    """Stratified samples of the no-gradient pass that places the importance samples."""
    fine_samples: int = 32
    """Importance samples, rendered with gradients (0: render the stratified samples)."""


@dataclass
class RenderOutput:
    """Images of B views. rgb [B, 3, H, W]; opacity [B, 1, H, W]; depth [B, 1, H, W];
    normal [B, 3, H, W] (world, weight-averaged); orientation: scalar, the mean over rays of
    sum_i w_i * max(0, n_i . d)^2 (threestudio's orientation loss)."""

    rgb: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor
    orientation: torch.Tensor


def render(
    field: RenderableField,
    cameras: Cameras,
    height: int,
    width: int,
    modes: torch.Tensor,
    backgrounds: torch.Tensor,
    config: RenderConfig = RenderConfig(),
    shading: ShadingConfig = ShadingConfig(),
    generator: torch.Generator | None = None,
) -> RenderOutput:
    """Render B views of `field`.

    Args:
        modes: [B] ShadingMode values; backgrounds: [B, 3] solid colours.
        generator: jitters the samples; None gives deterministic bin centres (previews, tests).
    """
    b = len(cameras)
    device = cameras.c2w.device
    rays = camera_rays(cameras, height, width)
    origins = rays.origins.reshape(-1, 3)
    dirs = rays.directions.reshape(-1, 3)
    near, far, _ = ray_box_interval(origins, dirs, field.bound)

    depths = stratified_samples(near, far, config.coarse_samples, generator)
    if config.fine_samples > 0:
        with torch.no_grad():
            points = origins[:, None] + dirs[:, None] * depths[..., None]
            density = field.density(points.reshape(-1, 3)).view_as(depths)
            weights = compositing_weights(density, sample_deltas(depths, far))
            depths = importance_samples(depths, weights, config.fine_samples, generator)

    r, s = depths.shape
    points = origins[:, None] + dirs[:, None] * depths[..., None]  # [R, S, 3]
    samples = field(points.reshape(-1, 3))
    weights = compositing_weights(samples.density.view(r, s), sample_deltas(depths, far))  # [R, S]

    per_view = (b, -1, 3)
    colour = shade(
        samples.albedo.view(per_view),
        samples.normal.view(per_view),
        points.view(per_view),
        cameras.light_position.to(device),
        modes.to(device),
        shading,
    ).view(r, s, 3)
    opacity = weights.sum(dim=-1)  # [R]
    bg = backgrounds.to(device).repeat_interleave(height * width, dim=0)  # [R, 3]
    rgb = (weights[..., None] * colour).sum(dim=1) + (1.0 - opacity)[:, None] * bg
    normal_samples = samples.normal.view(r, s, 3)
    normal = (weights[..., None] * normal_samples).sum(dim=1)
    depth = (weights * depths).sum(dim=-1)
    facing_away = (normal_samples * dirs[:, None]).sum(-1).clamp(min=0.0)
    orientation = (weights.detach() * facing_away.pow(2)).sum(dim=-1).mean()

    def image(x: torch.Tensor, c: int) -> torch.Tensor:
        return x.view(b, height, width, c).permute(0, 3, 1, 2)

    return RenderOutput(
        rgb=image(rgb, 3),
        opacity=image(opacity[:, None], 1),
        depth=image(depth[:, None], 1),
        normal=image(normal, 3),
        orientation=orientation,
    )
