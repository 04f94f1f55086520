"""Signed distance functions of the built-in model's objects (Z up, centred, radius <= ~0.5).

Each object is a union of parts; a part has an SDF and an albedo. The front of asymmetric
objects (the chair) faces -Y, the direction BoxDream's azimuth-0 camera looks from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Sdf = Callable[[torch.Tensor], torch.Tensor]
"""Points [..., 3] -> signed distance [...] (negative inside)."""

STEM_ALBEDO = (0.90, 0.85, 0.72)
"""Cream colour of a mushroom's stem; the cap carries the asked colour."""


def sphere(centre: tuple[float, float, float], radius: float) -> Sdf:
    c = torch.tensor(centre)
    return lambda p: (p - c).norm(dim=-1) - radius


def box(
    centre: tuple[float, float, float], half: tuple[float, float, float], round_: float = 0.0
) -> Sdf:
    c, h = torch.tensor(centre), torch.tensor(half) - round_

    def sdf(p: torch.Tensor) -> torch.Tensor:
        q = (p - c).abs() - h
        outside = q.clamp(min=0.0).norm(dim=-1)
        inside = q.max(dim=-1).values.clamp(max=0.0)
        return outside + inside - round_

    return sdf


def cylinder(centre: tuple[float, float, float], radius: float, half_height: float) -> Sdf:
    c = torch.tensor(centre)

    def sdf(p: torch.Tensor) -> torch.Tensor:
        q = p - c
        d = torch.stack([q[..., :2].norm(dim=-1) - radius, q[..., 2].abs() - half_height], -1)
        return d.max(dim=-1).values.clamp(max=0.0) + d.clamp(min=0.0).norm(dim=-1)

    return sdf


def capped_cone(
    centre: tuple[float, float, float], half_height: float, r_bottom: float, r_top: float
) -> Sdf:
    """Exact SDF of a cone frustum along Z (Inigo Quilez's capped cone)."""
    c = torch.tensor(centre)
    k1 = torch.tensor([r_top, half_height])
    k2 = torch.tensor([r_top - r_bottom, 2.0 * half_height])

    def sdf(p: torch.Tensor) -> torch.Tensor:
        rel = p - c
        q = torch.stack([rel[..., :2].norm(dim=-1), rel[..., 2]], dim=-1)
        radius = torch.where(q[..., 1] < 0.0, r_bottom, r_top)
        ca = torch.stack(
            [q[..., 0] - torch.minimum(q[..., 0], radius), q[..., 1].abs() - half_height], -1
        )
        h = ((k1 - q) * k2).sum(-1) / (k2 * k2).sum()
        cb = q - k1 + k2 * h.clamp(0.0, 1.0)[..., None]
        sign = torch.where((cb[..., 0] < 0.0) & (ca[..., 1] < 0.0), -1.0, 1.0)
        return sign * torch.minimum((ca * ca).sum(-1), (cb * cb).sum(-1)).sqrt()

    return sdf


def torus(centre: tuple[float, float, float], major: float, minor: float) -> Sdf:
    """A torus lying in the XY plane (hole along Z)."""
    c = torch.tensor(centre)

    def sdf(p: torch.Tensor) -> torch.Tensor:
        q = p - c
        ring = torch.stack([q[..., :2].norm(dim=-1) - major, q[..., 2]], dim=-1)
        return ring.norm(dim=-1) - minor

    return sdf


def dome(centre: tuple[float, float, float], radius_xy: float, radius_z: float) -> Sdf:
    """Upper half of an ellipsoid (a mushroom cap), approximate SDF."""
    c = torch.tensor(centre)
    r = torch.tensor([radius_xy, radius_xy, radius_z])

    def sdf(p: torch.Tensor) -> torch.Tensor:
        q = p - c
        k0 = (q / r).norm(dim=-1)
        k1 = (q / (r * r)).norm(dim=-1).clamp(min=1e-6)
        ellipsoid = k0 * (k0 - 1.0) / k1
        return torch.maximum(ellipsoid, -q[..., 2])

    return sdf


@dataclass(frozen=True)
class Part:
    sdf: Sdf
    fixed_albedo: tuple[float, float, float] | None = None
    """None: the part takes the asked colour."""


def _legs(half_x: float, half_y: float, top: float, bottom: float, half_width: float) -> list[Part]:
    h = 0.5 * (top - bottom)
    z = 0.5 * (top + bottom)
    return [
        Part(box((sx * half_x, sy * half_y, z), (half_width, half_width, h)))
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]


def object_parts(shape: str) -> list[Part]:
    """The parts of a named object of the built-in world."""
    if shape == "cube":
        return [Part(box((0, 0, 0), (0.34, 0.34, 0.34), round_=0.02))]
    if shape == "sphere":
        return [Part(sphere((0, 0, 0), 0.42))]
    if shape == "cylinder":
        return [Part(cylinder((0, 0, 0), 0.30, 0.38))]
    if shape == "cone":
        return [Part(capped_cone((0, 0, 0), 0.42, 0.40, 0.0))]
    if shape == "torus":
        return [Part(torus((0, 0, 0), 0.31, 0.14))]
    if shape == "snowman":
        return [
            Part(sphere((0, 0, -0.24), 0.25)),
            Part(sphere((0, 0, 0.13), 0.18)),
            Part(sphere((0, 0, 0.39), 0.12)),
        ]
    if shape == "mushroom":
        return [
            Part(cylinder((0, 0, -0.22), 0.11, 0.24), fixed_albedo=STEM_ALBEDO),
            Part(dome((0, 0, 0.0), 0.42, 0.34)),
        ]
    if shape == "table":
        return [
            Part(box((0, 0, 0.16), (0.46, 0.46, 0.045))),
            *_legs(0.38, 0.38, 0.16, -0.42, 0.05),
        ]
    if shape == "chair":
        return [
            Part(box((0, 0, -0.02), (0.30, 0.30, 0.045))),
            *_legs(0.25, 0.25, -0.02, -0.46, 0.045),
            Part(box((0, 0.26, 0.25), (0.30, 0.045, 0.25))),
        ]
    raise ValueError(f"unknown shape {shape!r}")


def evaluate(
    parts: list[Part], points: torch.Tensor, colour: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Union of parts at points [..., 3] -> (sdf [...], albedo [..., 3]); `colour` is [..., 3]
    or [3], the asked colour for parts without a fixed albedo."""
    distances = torch.stack([part.sdf(points) for part in parts], dim=-1)
    sdf, index = distances.min(dim=-1)
    albedo = colour.expand(*points.shape[:-1], 3).clone()
    for i, part in enumerate(parts):
        if part.fixed_albedo is not None:
            albedo[index == i] = torch.tensor(part.fixed_albedo)
    return sdf, albedo
