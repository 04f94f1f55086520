"""Differentiable volume renderer of a density + albedo field with DreamFusion shading.

Per ray: clip to the field's bounding cube, a coarse pass (no gradient) of stratified samples,
importance samples drawn from its weights (as mip-NeRF 360's proposal sampling, the
differentiable pass uses only these: on CPU it is the costly part), then density, albedo and
normals from the field, shading per sample (lit / albedo / textureless), alpha compositing
over the view's background. With fine_samples = 0 the stratified samples are rendered. On CPU
the importance sampling and the shading with compositing run as C kernels (`cpu_importance`,
`cpu_composite`), equal to the PyTorch terms here up to float rounding; other devices and the
reference path (`cpu_build.reference_path`) run the PyTorch terms.

Empty-space skipping (`RenderConfig.skip_empty`, fields with an occupancy grid): the rays are
clipped to the box of the occupied cells instead of the cube, rays that miss it show the
background, and the field is evaluated only at samples in occupied cells (density zero
elsewhere). docs/research/empty-space-skipping.md has what it saves and changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from backend.geometry.field_samples import FieldSamples
from backend.geometry.occupancy import Occupancy, OccupancyConfig
from backend.render import cpu_composite, cpu_importance
from backend.render.cameras import Cameras, camera_rays
from backend.render.compositing import compositing_weights, sample_deltas
from backend.render.ray_sampling import (
    importance_draws,
    importance_samples,
    ray_aabb_interval,
    ray_box_interval,
    stratified_draws,
    stratified_samples,
)
from backend.render.shading import ShadingConfig, shade


class RenderableField(Protocol):
    """What the renderer needs of a field (DenseGridField, composed scenes)."""

    bound: float

    def __call__(self, points: torch.Tensor) -> FieldSamples: ...

    def density(self, points: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class OccupancyBounded(Protocol):
    """A field that can say which cells of its cube may hold density (`DenseGridField`)."""

    def occupancy(self, config: OccupancyConfig) -> Occupancy: ...


@dataclass(frozen=True)
class RenderConfig:
    """Samples per ray, and whether empty space is skipped."""

    coarse_samples: int = 32
    """Stratified samples of the no-gradient pass that places the importance samples."""
    fine_samples: int = 32
    """Importance samples, rendered with gradients (0: render the stratified samples)."""
    skip_empty: bool = False
    """Fields with an `occupancy` (`OccupancyBounded`): refresh it every render, clip each ray
    to the occupied cells' box (rays that miss it are background) and evaluate the field only
    at samples in occupied cells. False: the reference path, every ray sampled across the whole
    cube (what `boxdream bench` times beside it and the tests compare against). Other fields
    always take the reference path. On for edits (`edit_config`), whose start field leaves most
    of the cube empty (render 0.55-0.6x); off for generation, whose start blob leaves a haze
    through the cube, so skipping only adds the occupancy's cost (step 1.06x on 2026-12-07,
    docs/research/empty-space-skipping.md)."""
    occupancy: OccupancyConfig = dataclasses.field(default_factory=OccupancyConfig)
    """Threshold, cell size and margin of the occupancy (with skip_empty)."""


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


@dataclass
class _RayColours:
    """Per-ray sums over samples for R rays: colour sum_i w_i c_i [R, 3], opacity [R],
    depth [R], normal [R, 3], orientation sum_i w_i max(0, n_i . d)^2 [R]."""

    colour: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor
    orientation: torch.Tensor

    def scattered(self, rays: int, index: torch.Tensor) -> _RayColours:
        """These R' rays placed at `index` [R'] among `rays` rays; zero elsewhere."""

        def place(x: torch.Tensor) -> torch.Tensor:
            return x.new_zeros((rays, *x.shape[1:])).index_copy(0, index, x)

        return _RayColours(*(place(x) for x in vars(self).values()))


SPARSE_SHARE = 0.5
"""The field is evaluated at the samples in occupied cells alone only when at most this share
of the cells is occupied; above it, gathering the samples and scattering the results back
costs more than the samples skipped (every cell occupied: 7-10% slower than evaluating all;
docs/research/empty-space-skipping.md), and every sample in the clipped rays is evaluated."""


def _density_at(
    field: RenderableField, points: torch.Tensor, occupancy: Occupancy | None
) -> torch.Tensor:
    """[N, 3] -> [N] density; with `occupancy`, evaluated only in occupied cells (zero
    elsewhere)."""
    if occupancy is None:
        return field.density(points)
    index = occupancy.contains(points).nonzero().squeeze(1)
    return points.new_zeros(points.shape[0]).index_copy(0, index, field.density(points[index]))


def _samples_at(
    field: RenderableField, points: torch.Tensor, occupancy: Occupancy | None
) -> FieldSamples:
    """[N, 3] -> the field's samples; with `occupancy`, evaluated only in occupied cells (zero
    elsewhere)."""
    if occupancy is None:
        return field(points)
    index = occupancy.contains(points).nonzero().squeeze(1)
    inside = field(points[index])
    n = points.shape[0]
    return FieldSamples(
        density=points.new_zeros(n).index_copy(0, index, inside.density),
        albedo=points.new_zeros(n, 3).index_copy(0, index, inside.albedo),
        normal=points.new_zeros(n, 3).index_copy(0, index, inside.normal),
    )


def _trace(
    field: RenderableField,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    light: torch.Tensor,
    modes: torch.Tensor,
    draws: tuple[torch.Tensor, torch.Tensor | None],
    occupancy: Occupancy | None,
    shading: ShadingConfig,
) -> _RayColours:
    """Sample, shade and composite R rays (origins, dirs [R, 3]; near, far [R]; light [R, 3];
    modes [R]; draws: stratified [R, S_c] and importance [R, S_f] or None); with `occupancy`,
    the field is evaluated only at samples in occupied cells."""
    depths = stratified_samples(near, far, draws[0])
    if draws[1] is not None:
        with torch.no_grad():
            points = origins[:, None] + dirs[:, None] * depths[..., None]
            density = _density_at(field, points.reshape(-1, 3), occupancy).view_as(depths)
            if cpu_importance.supports(depths):
                depths = cpu_importance.importance_depths(depths, density, draws[1])
            else:
                weights = compositing_weights(density, sample_deltas(depths, far))
                depths = importance_samples(depths, weights, draws[1])

    r, s = depths.shape
    points = origins[:, None] + dirs[:, None] * depths[..., None]  # [R, S, 3]
    samples = _samples_at(field, points.reshape(-1, 3), occupancy)
    density, deltas = samples.density.view(r, s), sample_deltas(depths, far)  # [R, S]
    albedo, normal = samples.albedo.view(r, s, 3), samples.normal.view(r, s, 3)
    if cpu_composite.supports(density):
        return _RayColours(
            *cpu_composite.composite(
                density, albedo, normal, depths, deltas, points, dirs, light, modes, shading
            )
        )
    weights = compositing_weights(density, deltas)  # [R, S]
    colour = shade(albedo, normal, points, light, modes, shading)  # [R, S, 3]
    facing_away = (normal * dirs[:, None]).sum(-1).clamp(min=0.0)
    return _RayColours(
        colour=(weights[..., None] * colour).sum(dim=1),
        opacity=weights.sum(dim=-1),
        depth=(weights * depths).sum(dim=-1),
        normal=(weights[..., None] * normal).sum(dim=1),
        orientation=(weights.detach() * facing_away.pow(2)).sum(dim=-1),
    )


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
            Both paths draw the same numbers, so a run's later draws do not depend on the path.
    """
    b = len(cameras)
    device = cameras.c2w.device
    rays = camera_rays(cameras, height, width)
    origins = rays.origins.reshape(-1, 3)
    dirs = rays.directions.reshape(-1, 3)
    count = origins.shape[0]
    view = torch.arange(b, device=device).repeat_interleave(height * width)  # [R]
    light = cameras.light_position.to(device)[view]  # [R, 3]
    ray_modes = modes.to(device)[view]  # [R]
    coarse = stratified_draws(count, config.coarse_samples, generator).to(device)
    fine = None
    if config.fine_samples > 0:
        fine = importance_draws(count, config.fine_samples, generator).to(device)

    occupancy = None
    if config.skip_empty and isinstance(field, OccupancyBounded):
        occupancy = field.occupancy(config.occupancy)
    if occupancy is None:
        near, far, _ = ray_box_interval(origins, dirs, field.bound)
        index = None
    else:
        box = occupancy.box(field.bound)
        if box is None:  # nothing occupied: every ray misses
            index = torch.zeros(0, dtype=torch.long, device=device)
            near = far = origins.new_zeros(count)
        else:
            near, far, hit = ray_aabb_interval(origins, dirs, box[0].to(device), box[1].to(device))
            index = None if hit.all() else hit.nonzero().squeeze(1)
        if occupancy.cells.float().mean() > SPARSE_SHARE:
            occupancy = None  # clipped rays only: every one of their samples is evaluated

    def traced(rows: torch.Tensor | None) -> _RayColours:
        def pick(x: torch.Tensor | None) -> torch.Tensor | None:
            return x if rows is None or x is None else x[rows]

        return _trace(
            field,
            pick(origins),
            pick(dirs),
            pick(near),
            pick(far),
            pick(light),
            pick(ray_modes),
            (pick(coarse), pick(fine)),
            occupancy,
            shading,
        )

    out = traced(None) if index is None else traced(index).scattered(count, index)
    bg = backgrounds.to(device)[view]  # [R, 3]
    rgb = out.colour + (1.0 - out.opacity)[:, None] * bg

    def image(x: torch.Tensor, c: int) -> torch.Tensor:
        return x.view(b, height, width, c).permute(0, 3, 1, 2)

    return RenderOutput(
        rgb=image(rgb, 3),
        opacity=image(out.opacity[:, None], 1),
        depth=image(out.depth[:, None], 1),
        normal=image(out.normal, 3),
        orientation=out.orientation.mean(),
    )
