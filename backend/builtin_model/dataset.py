"""The procedural training set of `tiny-shapes`: sphere-traced renders of the built-in world.

Images come from the same camera distribution, light sampling, shading modes and backgrounds
that the score-distillation loop uses (`backend.render`), so the prior is asked about views it
has seen. Captions are "a {colour} {shape}" with synonyms, the view-dependent suffix
(always for asymmetric objects, half of the time otherwise), colourless captions and the empty
caption for classifier-free guidance. Objects stand in their canonical pose (a cube's faces on
the world axes, a chair facing -Y), and every image keeps the camera condition c of the camera
that saw it (`backend.guidance.camera_condition`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from backend.builtin_model import shapes, vocabulary
from backend.guidance.camera_condition import camera_condition
from backend.guidance.view_prompts import view_suffix
from backend.render.background import sample_backgrounds
from backend.render.cameras import (
    TRAINING_CAMERAS,
    Cameras,
    CameraSamplingConfig,
    camera_rays,
    orbit_cameras,
    sample_cameras,
)
from backend.render.pattern_backgrounds import sample_pattern_backgrounds
from backend.render.shading import ShadingConfig, sample_shading_modes, shade


@dataclass(frozen=True)
class DatasetConfig:
    """What the training set holds."""

    resolution: int = 32
    """Image side in pixels (the model's native resolution)."""
    trace_steps: int = 48
    """Sphere-tracing iterations per ray."""
    colour_jitter: float = 0.05
    """Uniform noise added to each object's albedo, so colours are regions, not points."""
    scale_range: tuple[float, float] = (1.0, 1.0)
    """Random uniform scale of the object (fixed, like the camera's distance and fov, so that
    the object's size on screen does not hide its orientation; see `TRAINING_CAMERAS`)."""
    cameras: CameraSamplingConfig = TRAINING_CAMERAS
    """Camera ranges of the images."""
    colourless_caption_prob: float = 0.1
    """Share of captions without the colour word ("a cube")."""
    null_caption_prob: float = 0.1
    """Share of empty captions (the unconditional branch of classifier-free guidance)."""
    suffix_prob_symmetric: float = 0.5
    """Chance that a symmetric object's caption carries the view suffix."""
    shading: ShadingConfig = ShadingConfig()
    """Light model and shading-mode odds (the loop's; `tiny-clip` drops the textureless mode,
    whose white object would contradict its caption's colour)."""
    pattern_background_prob: float = 0.0
    """Share of images composited over Dream Fields' pattern backgrounds
    (`backend.render.pattern_backgrounds`) instead of a solid grey: `tiny-clip` must read
    objects over the backgrounds CLIP guidance renders them on."""


def caption_for(
    shape: str,
    colour: str,
    elevation: float,
    azimuth: float,
    cfg: DatasetConfig,
    rng: random.Random,
) -> str:
    """One training caption for an object seen from (elevation, azimuth) degrees."""
    u = rng.random()
    if u < cfg.null_caption_prob:
        return ""
    words = [w for w, s in vocabulary.SYNONYMS.items() if s == shape]
    noun = rng.choice([shape, *words]) if words and rng.random() < 0.3 else shape
    text = (
        f"a {noun}"
        if u < cfg.null_caption_prob + cfg.colourless_caption_prob
        else f"a {colour} {noun}"
    )
    if shape in vocabulary.ASYMMETRIC_SHAPES or rng.random() < cfg.suffix_prob_symmetric:
        text += view_suffix(elevation, azimuth)
    return text


def _sphere_trace(
    parts: list[shapes.Part],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    steps: int,
    pixel_angle: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """March rays [R, 3] through the union of parts -> (depth [R], coverage [R] in [0, 1]).

    Coverage is a cheap anti-aliasing: 1 on a hit, falling off with the closest approach of the
    ray measured in pixel footprints (pixel_angle [R] * distance).
    """
    t = torch.zeros(origins.shape[0])
    closest = torch.full_like(t, 1e9)
    for _ in range(steps):
        p = origins + dirs * t[:, None]
        d = torch.stack([part.sdf(p) for part in parts], dim=-1).min(dim=-1).values
        closest = torch.minimum(closest, d / (pixel_angle * t.clamp(min=1e-3)))
        t = t + 0.9 * d.clamp(min=-0.05)
    p = origins + dirs * t[:, None]
    d = torch.stack([part.sdf(p) for part in parts], dim=-1).min(dim=-1).values
    hit = d.abs() < 2e-3
    coverage = torch.where(hit, torch.ones_like(t), (0.5 - closest).clamp(0.0, 1.0))
    return t, coverage


def training_views(elevation_deg: torch.Tensor, azimuth_deg: torch.Tensor) -> Cameras:
    """Orbit cameras [B] at given elevations and azimuths (degrees) with the training set's one
    distance and field of view (`TRAINING_CAMERAS`)."""
    b = elevation_deg.shape[0]
    return orbit_cameras(
        elevation_deg,
        azimuth_deg,
        torch.full((b,), TRAINING_CAMERAS.distance_range[0]),
        torch.full((b,), TRAINING_CAMERAS.fovy_range_deg[0]),
    )


def _trace_views(
    parts: list[shapes.Part],
    cameras: Cameras,
    resolution: int,
    scale: torch.Tensor,
    trace_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ray per pixel of every camera through the parts scaled by scale [B] -> (the first
    surface points in object space [B * H * W, 3], coverage [B * H * W] in [0, 1])."""
    rays = camera_rays(cameras, resolution, resolution)
    # Trace in object space (scaled), so one set of parts serves every scale.
    origins = (rays.origins / scale[:, None, None, None]).reshape(-1, 3)
    dirs = rays.directions.reshape(-1, 3)
    pixel_angle = (cameras.fovy / resolution).repeat_interleave(resolution * resolution)
    depth, coverage = _sphere_trace(parts, origins, dirs, trace_steps, pixel_angle)
    return origins + dirs * depth[:, None], coverage


def silhouettes(
    shape: str, cameras: Cameras, resolution: int, cfg: DatasetConfig = DatasetConfig()
) -> torch.Tensor:
    """Coverage [B, H, W] in [0, 1] of a built-in object (canonical pose, scale 1) in the
    training set's renders from `cameras`: where the object is, as the prior was shown it."""
    b = len(cameras)
    _, coverage = _trace_views(
        shapes.object_parts(shape), cameras, resolution, torch.ones(b), cfg.trace_steps
    )
    return coverage.view(b, resolution, resolution)


def _normals(parts: list[shapes.Part], points: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Central-difference SDF gradient at points [R, 3] -> unit normals [R, 3]."""
    offsets = torch.eye(3) * eps
    grads = []
    for axis in range(3):
        hi = torch.stack([part.sdf(points + offsets[axis]) for part in parts], -1).min(-1).values
        lo = torch.stack([part.sdf(points - offsets[axis]) for part in parts], -1).min(-1).values
        grads.append(hi - lo)
    return torch.nn.functional.normalize(torch.stack(grads, dim=-1), dim=-1)


def render_batch(
    shape: str,
    colour_names: list[str],
    cfg: DatasetConfig,
    generator: torch.Generator,
    rng: random.Random,
) -> tuple[torch.Tensor, list[str], Cameras]:
    """Render len(colour_names) images of one shape -> ([B, 3, H, W] in [0, 1], captions, the
    B cameras that saw them)."""
    b, res = len(colour_names), cfg.resolution
    cameras = sample_cameras(b, cfg.cameras, generator)
    # Shuffle the stratified azimuths so each image gets an independent view.
    perm = torch.randperm(b, generator=generator)
    cameras.c2w, cameras.elevation, cameras.azimuth = (
        cameras.c2w[perm],
        cameras.elevation[perm],
        cameras.azimuth[perm],
    )
    cameras.distance, cameras.fovy, cameras.light_position = (
        cameras.distance[perm],
        cameras.fovy[perm],
        cameras.light_position[perm],
    )
    scale = cfg.scale_range[0] + (cfg.scale_range[1] - cfg.scale_range[0]) * torch.rand(
        b, generator=generator
    )
    parts = shapes.object_parts(shape)
    points, coverage = _trace_views(parts, cameras, res, scale, cfg.trace_steps)

    colours = torch.tensor([vocabulary.COLOURS[c] for c in colour_names])
    colours = (colours + (torch.rand(b, 3, generator=generator) * 2 - 1) * cfg.colour_jitter).clamp(
        0, 1
    )
    per_ray_colour = colours.repeat_interleave(res * res, dim=0)
    _, albedo = shapes.evaluate(parts, points, per_ray_colour)
    normals = _normals(parts, points)
    modes = sample_shading_modes(b, cfg.shading, generator)
    rgb = shade(
        albedo.view(b, res * res, 3),
        normals.view(b, res * res, 3),
        points.view(b, res * res, 3) * scale[:, None, None],
        cameras.light_position,
        modes,
        cfg.shading,
    )
    background = sample_backgrounds(b, generator)[:, :, None, None].expand(b, 3, res, res)
    if cfg.pattern_background_prob > 0:
        patterned = torch.rand(b, generator=generator) < cfg.pattern_background_prob
        patterns = sample_pattern_backgrounds(b, res, res, generator)
        background = torch.where(patterned[:, None, None, None], patterns, background)
    alpha = coverage.view(b, 1, res, res)
    rgb = rgb.view(b, res, res, 3).permute(0, 3, 1, 2)
    image = (rgb * alpha + background * (1 - alpha)).clamp(0, 1)  # [B, 3, H, W]
    captions = [
        caption_for(shape, c, float(e), float(a), cfg, rng)
        for c, e, a in zip(colour_names, cameras.elevation, cameras.azimuth, strict=True)
    ]
    return image, captions, cameras


def build_dataset(
    count: int, seed: int, cfg: DatasetConfig = DatasetConfig(), batch: int = 256
) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Render `count` images (uint8 [N, 3, H, W]), captions and camera conditions
    ([N, CAMERA_CONDITION_DIM]), balanced over shapes, colours at random; reproducible from
    `seed`."""
    generator = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    images, captions, conditions = [], [], []
    colour_names = list(vocabulary.COLOURS)
    done = 0
    while done < count:
        shape = vocabulary.SHAPES[(done // batch) % len(vocabulary.SHAPES)]
        n = min(batch, count - done)
        names = [rng.choice(colour_names) for _ in range(n)]
        img, cap, cameras = render_batch(shape, names, cfg, generator, rng)
        images.append((img * 255).round().to(torch.uint8))
        captions.extend(cap)
        conditions.append(camera_condition(cameras.c2w))
        done += n
    return torch.cat(images), captions, torch.cat(conditions)
