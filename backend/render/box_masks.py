"""Per-pixel ownership masks of a composed scene (Po & Wetzstein's m_i).

Each pixel's ray belongs to the box it enters first: the slab test runs in each box's unit
frame (where the box is [-1, 1]^3), the ray parameter t of the entry point is compared across
boxes, and the smallest wins. A camera inside a box enters it at t = 0. Rays that miss every
box belong to the last channel, "none" (the scene prompt, or the unconditional prediction).
Overlapping boxes are allowed: where a ray enters two boxes at the same t, the box listed
first owns it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from backend.geometry.oriented_box import OrientedBox
from backend.render.cameras import Cameras, camera_rays
from backend.render.ray_sampling import ray_box_interval


def first_hit_box(
    cameras: Cameras, boxes: Sequence[OrientedBox], height: int, width: int
) -> torch.Tensor:
    """[B, H, W] long: index of the box each pixel's ray enters first, len(boxes) for none.

    `boxes` live in the cameras' frame.
    """
    rays = camera_rays(cameras, height, width)
    origins = rays.origins.reshape(-1, 3)
    directions = rays.directions.reshape(-1, 3)
    entry = torch.full((len(boxes) + 1, origins.shape[0]), torch.inf, device=origins.device)
    entry[-1] = torch.finfo(entry.dtype).max  # "none" wins only where no box is hit
    for index, box in enumerate(boxes):
        # The parametrisation o + t d survives the map to unit coordinates, so t is comparable.
        near, _, hit = ray_box_interval(
            box.to_unit(origins), box.directions_to_unit(directions), 1.0
        )
        entry[index] = torch.where(hit, near, torch.inf)
    # argmin returns the first of equal minima: the box listed first wins ties.
    return entry.argmin(dim=0).view(len(cameras), height, width)


def box_masks(
    cameras: Cameras, boxes: Sequence[OrientedBox], height: int, width: int
) -> torch.Tensor:
    """[B, n_boxes + 1, H, W] float one-hot ownership masks m_i; channel n_boxes is "none"."""
    owner = first_hit_box(cameras, boxes, height, width)
    return torch.nn.functional.one_hot(owner, len(boxes) + 1).permute(0, 3, 1, 2).float()
