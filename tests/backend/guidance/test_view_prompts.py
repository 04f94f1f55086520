"""View-dependent prompt selection at the thresholds."""

from __future__ import annotations

import pytest
import torch

from backend.guidance.view_prompts import View, view_of, view_prompts, view_suffix, views_of


@pytest.mark.parametrize(
    ("elevation", "azimuth", "view"),
    [
        (0.0, 0.0, View.FRONT),
        (0.0, 44.9, View.FRONT),
        (0.0, -44.9, View.FRONT),
        (0.0, 45.0, View.SIDE),
        (0.0, -45.0, View.SIDE),
        (0.0, 135.0, View.SIDE),
        (0.0, 135.1, View.BACK),
        (0.0, -135.1, View.BACK),
        (0.0, 180.0, View.BACK),
        (0.0, 359.0, View.FRONT),  # wraps to -1
        (60.0, 0.0, View.FRONT),
        (60.1, 180.0, View.OVERHEAD),
        (89.0, 90.0, View.OVERHEAD),
    ],
)
def test_view_thresholds(elevation, azimuth, view):
    assert view_of(elevation, azimuth) is view


def test_suffixes_and_prompt_table():
    assert view_suffix(0.0, 170.0) == ", back view"
    prompts = view_prompts("a red chair")
    assert prompts[View.FRONT] == "a red chair, front view"
    assert prompts[View.OVERHEAD] == "a red chair, overhead view"
    views = views_of(torch.tensor([0.0, 0.0, 70.0]), torch.tensor([0.0, 90.0, 0.0]))
    assert views.tolist() == [View.FRONT, View.SIDE, View.OVERHEAD]
