"""Classifier-free guidance by noise level, for score distillation.

Kynkäänniemi et al. (2024, "Applying guidance in a limited interval improves sample and
distribution quality in diffusion models") apply guidance only over part of the noise levels
when sampling. For distillation from `tiny-shapes` we found the same split in the gradient
itself: on crisp renders of a cube, the guided SDS gradient (s = 30) pushes the edge pixels
toward the background at t = 0.1-0.6 (eroding the corners, which rounds a cube into a soft
box), while the unguided one pushes them toward the cube, and guidance is what sets colour and
outline at t >= 0.65. So:

    s(t) = s_high             for t >= t_start    (the preset's guidance scale)
    s(t) = s_low              for t <  t_start
    w'(t) = w(t) * k_low      for t <  t_start    (k_low > 1: the mildly guided band leads)

with w(t) the method's weighting (DreamFusion's sigma_t^2 for SDS), from `start_progress` of the
run on (before it, s_high at every t). Without the extra weight the mildly guided band is too
weak to move the field; without the interval the weight turns the strong guidance's erosion up
(measurements in docs/research/guidance-interval.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GuidanceInterval:
    """Where full classifier-free guidance applies, and what the band below it gets."""

    t_start: float = 0.65
    """Lowest t, as a fraction of the training timesteps, that gets the full scale s_high."""
    low_scale: float = 2.0
    """s_low: the guidance scale below `t_start`."""
    low_weight: float = 40.0
    """k_low: the factor on w(t) below `t_start`."""
    start_progress: float = 0.3
    """Fraction of the run guided at s_high at every t first (plain SDS forms the object and
    its colour; the interval then refines it)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.t_start < 1.0:
            raise ValueError(f"t_start must be in (0, 1), got {self.t_start}")
        if not self.low_scale >= 0.0:
            raise ValueError(f"low_scale must be >= 0, got {self.low_scale}")
        if not self.low_weight > 0.0:
            raise ValueError(f"low_weight must be > 0, got {self.low_weight}")
        if not 0.0 <= self.start_progress < 1.0:
            raise ValueError(f"start_progress must be in [0, 1), got {self.start_progress}")

    def active(self, progress: float) -> bool:
        """Whether the interval applies at this fraction of the run."""
        return progress >= self.start_progress

    def _below(self, t: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
        return t < self.t_start * num_train_timesteps

    def scale(self, t: torch.Tensor, num_train_timesteps: int, high_scale: float) -> torch.Tensor:
        """s(t) for integer timesteps t [B] -> [B, 1, 1, 1]."""
        scale = torch.where(self._below(t, num_train_timesteps), self.low_scale, high_scale)
        return scale.view(-1, 1, 1, 1)

    def weight(self, t: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
        """The factor on w(t) for integer timesteps t [B] -> [B, 1, 1, 1]."""
        below = self._below(t, num_train_timesteps).float()
        return (1.0 + (self.low_weight - 1.0) * below).view(-1, 1, 1, 1)


def interval_at(interval: GuidanceInterval | None, progress: float) -> GuidanceInterval | None:
    """`interval` where it applies at this fraction of the run, else None (s at every t)."""
    return interval if interval is not None and interval.active(progress) else None


def guidance_scale_at(
    high_scale: float,
    interval: GuidanceInterval | None,
    t: torch.Tensor,
    num_train_timesteps: int,
    dtype: torch.dtype,
) -> float | torch.Tensor:
    """The guidance scale for timesteps t [B]: `high_scale` without an interval, else s(t)
    [B, 1, 1, 1] in `dtype` (both broadcast against eps [B, C, h, w])."""
    if interval is None:
        return high_scale
    return interval.scale(t, num_train_timesteps, high_scale).to(dtype)
