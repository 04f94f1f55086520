"""Where along each ray the field is sampled: the ray/box interval, stratified samples, and
importance samples drawn from a coarse pass's weights (NeRF's hierarchical sampling), so the
differentiable pass spends its samples near surfaces instead of in empty space."""

from __future__ import annotations

import torch

WEIGHT_PADDING = 1e-5
"""Added to each coarse weight before the importance pdf is formed, so a ray through empty
space still spreads its samples (NeRF's 1e-5)."""


def ray_box_interval(
    origins: torch.Tensor, directions: torch.Tensor, bound: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test against the cube [-bound, bound]^3 (`ray_aabb_interval`)."""
    high = torch.full((3,), bound, dtype=origins.dtype, device=origins.device)
    return ray_aabb_interval(origins, directions, -high, high)


def ray_aabb_interval(
    origins: torch.Tensor, directions: torch.Tensor, low: torch.Tensor, high: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test against the box [low, high] (each [3]). origins, directions: [R, 3].

    Returns near [R], far [R] (clamped to >= 0; far = near on a miss) and hit [R] (bool).
    """
    inv = 1.0 / torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (low - origins) * inv
    t1 = (high - origins) * inv
    near = torch.minimum(t0, t1).max(dim=-1).values.clamp(min=0.0)
    far = torch.maximum(t0, t1).min(dim=-1).values
    hit = far > near
    return near, torch.where(hit, far, near), hit


def stratified_draws(rays: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """[rays, count] positions within each of `count` bins: uniform draws, or 0.5 (the bin
    centres) when generator is None."""
    if generator is None:
        return torch.full((rays, count), 0.5)
    return torch.rand(rays, count, generator=generator)


def importance_draws(rays: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """[rays, count] sorted CDF levels in (0, 1), one in each of `count` equal strata,
    u_k = (k + xi_k) / count with xi_k uniform (mip-NeRF 360's jittered levels: the importance
    samples cover the pdf more evenly than sorted i.i.d. draws, and need no sort); evenly
    spaced levels when generator is None. Sorted levels give sorted depths."""
    if generator is None:
        return torch.linspace(0.0, 1.0, count + 2)[1:-1].expand(rays, count).contiguous()
    return stratified_draws(rays, count, generator).add_(torch.arange(count)).div_(count)


def stratified_samples(near: torch.Tensor, far: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """[R] near/far and [R, S] `stratified_draws` -> [R, S] sorted depths, one in each of S
    equal bins of [near, far]."""
    bins = torch.arange(u.shape[-1], device=near.device, dtype=near.dtype)
    frac = (bins + u) / u.shape[-1]
    return near[:, None] + (far - near)[:, None] * frac


def importance_samples(
    depths: torch.Tensor, weights: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """Inverse-CDF samples of the piecewise-constant pdf given by `weights` [R, S] on the bins
    between `depths` [R, S] midpoints, at the [R, count] `importance_draws` u -> [R, count]
    sorted depths (no gradient)."""
    mids = 0.5 * (depths[:, 1:] + depths[:, :-1])  # [R, S-1] bin edges
    w = weights[:, 1:-1].detach() + WEIGHT_PADDING  # [R, S-2] weights of the interior bins
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(dim=-1)], dim=-1)  # [R, S-1]
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
    edge_lo, edge_hi = mids.gather(-1, idx - 1), mids.gather(-1, idx)
    frac = (u - cdf_lo) / (cdf_hi - cdf_lo).clamp(min=1e-8)
    return edge_lo + frac * (edge_hi - edge_lo)
