"""Ownership masks against hand-computed cases.

The camera of every test sits at (0, -4, 0) looking along +Y (azimuth 0, elevation 0) with a
90 degree field of view on an 8 x 8 image, so the focal length is 4 px and pixel (row j,
column i) looks along (x_i, 1, y_j) with x_i = (i - 3.5) / 4 and y_j = -(j - 3.5) / 4: the
tangents +-0.125, +-0.375, +-0.625, +-0.875.
"""

from __future__ import annotations

import torch

from backend.geometry.oriented_box import OrientedBox
from backend.render.box_masks import box_masks, first_hit_box
from backend.render.cameras import orbit_cameras

SIZE = 8


def front_camera(distance: float = 4.0):
    one = torch.ones(1)
    return orbit_cameras(0.0 * one, 0.0 * one, distance * one, 90.0 * one)


def expected_rings(near_side: int, far_side: int, near: int, far: int, none: int) -> torch.Tensor:
    """[8, 8]: `near` on the centred near_side square, `far` on the far_side square around it,
    `none` elsewhere."""
    owner = torch.full((SIZE, SIZE), none, dtype=torch.long)
    for side, value in ((far_side, far), (near_side, near)):
        lo = (SIZE - side) // 2
        owner[lo : lo + side, lo : lo + side] = value
    return owner


# Near box: a unit cube at y = -2, seen from 1.5 to 2.5 m; a ray with tangents (x, y) enters it
# iff |x|, |y| <= 0.5 / 1.5 = 1/3: the central 2 x 2 pixels (0.125), not 0.375.
NEAR = OrientedBox(centre=(0.0, -2.0, 0.0), half_size=(0.5, 0.5, 0.5), yaw_deg=0.0)
# Far box: own half-edges (0.5, 2.5, 2.5) turned by 90 degrees -> world half-extents
# (2.5, 0.5, 2.5) at y = 2, front face 5.5 m away; rays enter it iff |x|, |y| <= 2.5 / 5.5
# = 0.4545: the central 4 x 4 pixels (0.125 and 0.375), not 0.625.
FAR = OrientedBox(centre=(0.0, 2.0, 0.0), half_size=(0.5, 2.5, 2.5), yaw_deg=90.0)


def test_near_box_occludes_far_box():
    owner = first_hit_box(front_camera(), [FAR, NEAR], SIZE, SIZE)[0]
    assert torch.equal(owner, expected_rings(2, 4, near=1, far=0, none=2))


def test_masks_are_one_hot_and_follow_box_order():
    masks = box_masks(front_camera(), [NEAR, FAR], SIZE, SIZE)
    assert masks.shape == (1, 3, SIZE, SIZE)
    assert torch.equal(masks.sum(dim=1), torch.ones(1, SIZE, SIZE))
    assert torch.equal(masks[0].argmax(dim=0), expected_rings(2, 4, near=0, far=1, none=2))


def test_yaw_turns_the_box():
    # Own half-edges (0.1, 1.0, 0.5): unturned, the slab is 0.2 m wide facing the camera edge-on
    # and its nearest face (y = -1, 3 m away) needs |x| <= 0.1 / 3 -> no pixel. Turned by 90
    # degrees it is 2 m wide and 0.2 m deep (y in [-0.1, 0.1]): |x| <= 1 / 3.9 = 0.256 and
    # |y| <= 0.5 / 3.9 = 0.128 -> the central 2 x 2 pixels.
    slab = dict(centre=(0.0, 0.0, 0.0), half_size=(0.1, 1.0, 0.5))
    unturned = first_hit_box(front_camera(), [OrientedBox(**slab, yaw_deg=0.0)], SIZE, SIZE)[0]
    turned = first_hit_box(front_camera(), [OrientedBox(**slab, yaw_deg=90.0)], SIZE, SIZE)[0]
    assert torch.equal(unturned, torch.ones(SIZE, SIZE, dtype=torch.long))
    assert torch.equal(turned, expected_rings(2, 2, near=0, far=0, none=1))


def test_camera_inside_a_box_belongs_to_it():
    # The camera at y = -4 inside a big box that also holds the near box: every ray starts in
    # the big box (entry t = 0), so the big box owns the whole image.
    big = OrientedBox(centre=(0.0, -3.0, 0.0), half_size=(3.0, 3.0, 3.0), yaw_deg=0.0)
    owner = first_hit_box(front_camera(), [NEAR, big], SIZE, SIZE)[0]
    assert torch.equal(owner, torch.ones(SIZE, SIZE, dtype=torch.long))


def test_overlapping_boxes_first_listed_wins_ties():
    twin = OrientedBox(centre=NEAR.centre, half_size=NEAR.half_size, yaw_deg=0.0)
    owner = first_hit_box(front_camera(), [twin, NEAR], SIZE, SIZE)[0]
    assert torch.equal(owner, expected_rings(2, 2, near=0, far=0, none=2))
