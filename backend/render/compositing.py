"""Emission-absorption volume rendering (NeRF quadrature).

For samples i along a ray with density sigma_i and spacing delta_i:
    alpha_i = 1 - exp(-sigma_i delta_i),  T_i = prod_{j<i} (1 - alpha_j),  w_i = T_i alpha_i,
    C = sum_i w_i c_i + (1 - sum_i w_i) * background.
"""

from __future__ import annotations

import torch


def sample_deltas(depths: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    """[R, S] sorted depths, [R] far -> [R, S] spacings (the last one reaches `far`)."""
    return torch.cat(
        [depths[:, 1:] - depths[:, :-1], (far[:, None] - depths[:, -1:]).clamp(min=0)], -1
    )


def compositing_weights(density: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """[R, S] densities and spacings -> [R, S] weights w_i = T_i alpha_i."""
    optical = density * deltas
    alpha = 1.0 - torch.exp(-optical)
    # T_i = exp(-sum_{j<i} sigma_j delta_j), exclusive cumulative sum (numerically stable).
    transmittance = torch.exp(
        -torch.cat([torch.zeros_like(optical[:, :1]), optical[:, :-1]], -1).cumsum(-1)
    )
    return transmittance * alpha
