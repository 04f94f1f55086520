"""The training set's renders: silhouettes of the built-in objects where the cameras put them."""

from __future__ import annotations

import math

import torch

from backend.builtin_model.dataset import silhouettes, training_views
from backend.render.cameras import TRAINING_CAMERAS

DISTANCE = TRAINING_CAMERAS.distance_range[0]
FOCAL = 16.0 / math.tan(math.radians(TRAINING_CAMERAS.fovy_range_deg[0]) / 2)  # pixels, 32 px
HALF = 0.34  # the cube's half side (backend.builtin_model.shapes)


def _cube_masks(azimuths: list[float]) -> torch.Tensor:
    cameras = training_views(torch.zeros(len(azimuths)), torch.tensor(azimuths))
    return silhouettes("cube", cameras, 32) > 0.5


def _pixels_within(half_width: float) -> int:
    """Pixel centres (at 0.5, 1.5, ... from the image centre) within +-half_width."""
    return 2 * math.floor(half_width + 0.5)


def test_a_cube_seen_from_the_front_is_its_front_face():
    """From straight in front, the silhouette is the front face: a square of half side
    f * 0.34 / (1.75 - 0.34) pixels, centred."""
    (mask,) = _cube_masks([0.0])
    side = _pixels_within(FOCAL * HALF / (DISTANCE - HALF))
    assert mask.any(0).sum() == side and mask.any(1).sum() == side
    assert mask.sum() == side * side  # a full square: its corners are there
    assert torch.equal(mask, mask.flip(0)) and torch.equal(mask, mask.flip(1))


def test_a_cube_seen_at_45_degrees_shows_its_edge():
    """At 45 degrees of azimuth the outline is as wide as the side edges, half a diagonal
    (0.34 sqrt 2) off the centre at the camera's distance, and its top corners are cut by the
    nearer top edge; turning the camera the other way mirrors it."""
    front, left, right = _cube_masks([0.0, 45.0, -45.0])
    width = _pixels_within(FOCAL * HALF * math.sqrt(2) / DISTANCE)
    assert left.any(0).sum() == width > front.any(0).sum()
    rows = left.any(1).nonzero().squeeze(1)
    assert not left[rows.min(), (32 - width) // 2]  # a top corner of the bounding box is empty
    assert torch.equal(left, right.flip(1))
