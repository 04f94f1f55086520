"""Where along each ray the field is sampled: the ray/box interval, stratified samples, and
importance samples drawn from a coarse pass's weights (NeRF's hierarchical sampling), so the
differentiable pass spends its samples near surfaces instead of in empty space."""

from __future__ import annotations

import torch


def ray_box_interval(
    origins: torch.Tensor, directions: torch.Tensor, bound: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test against [-bound, bound]^3. origins, directions: [R, 3].

    Returns near [R], far [R] (clamped to >= 0) and hit [R] (bool).
    """
    inv = 1.0 / torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (-bound - origins) * inv
    t1 = (bound - origins) * inv
    near = torch.minimum(t0, t1).max(dim=-1).values.clamp(min=0.0)
    far = torch.maximum(t0, t1).min(dim=-1).values
    hit = far > near
    return near, torch.where(hit, far, near), hit


def stratified_samples(
    near: torch.Tensor, far: torch.Tensor, count: int, generator: torch.Generator | None
) -> torch.Tensor:
    """[R] near/far -> [R, count] sorted depths, one uniform draw in each of `count` bins
    (bin centres when generator is None)."""
    bins = torch.arange(count, device=near.device, dtype=near.dtype)
    if generator is None:
        u = torch.full((near.shape[0], count), 0.5, device=near.device)
    else:
        u = torch.rand(near.shape[0], count, generator=generator).to(near.device)
    frac = (bins + u) / count
    return near[:, None] + (far - near)[:, None] * frac


def importance_samples(
    depths: torch.Tensor, weights: torch.Tensor, count: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Inverse-CDF samples of the piecewise-constant pdf given by `weights` [R, S] on the bins
    between `depths` [R, S] midpoints -> [R, count] depths (no gradient)."""
    mids = 0.5 * (depths[:, 1:] + depths[:, :-1])  # [R, S-1] bin edges
    w = weights[:, 1:-1].detach() + 1e-5  # [R, S-2] weights of the interior bins
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(dim=-1)], dim=-1)  # [R, S-1]
    if generator is None:
        u = torch.linspace(0.0, 1.0, count + 2, device=depths.device)[1:-1].expand(
            depths.shape[0], count
        )
    else:
        u = torch.rand(depths.shape[0], count, generator=generator).to(depths.device)
    u = u.sort(dim=-1).values.contiguous()  # sorted draws give sorted depths
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
    edge_lo, edge_hi = mids.gather(-1, idx - 1), mids.gather(-1, idx)
    frac = (u - cdf_lo) / (cdf_hi - cdf_lo).clamp(min=1e-8)
    return edge_lo + frac * (edge_hi - edge_lo)
