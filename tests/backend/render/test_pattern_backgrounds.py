"""Dream Fields' random pattern backgrounds."""

from __future__ import annotations

import torch

from backend.render.pattern_backgrounds import sample_pattern_backgrounds


def test_backgrounds_are_images_in_range_and_reproducible():
    a = sample_pattern_backgrounds(12, 32, 24, torch.Generator().manual_seed(3))
    b = sample_pattern_backgrounds(12, 32, 24, torch.Generator().manual_seed(3))
    assert a.shape == (12, 3, 32, 24)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    torch.testing.assert_close(a, b)


def test_every_kind_appears_checkerboards_two_coloured_noise_busy_blur_smooth():
    images = sample_pattern_backgrounds(60, 32, 32, torch.Generator().manual_seed(0))
    colours = [len(torch.unique(image.reshape(3, -1), dim=1).T) for image in images]
    # Neighbouring-pixel difference: white noise is rough, blurred noise smooth.
    roughness = [float((image[:, 1:] - image[:, :-1]).abs().mean()) for image in images]
    checkerboards = [c == 2 for c in colours]
    noise = [c > 2 and r > 0.2 for c, r in zip(colours, roughness, strict=True)]
    blurred = [c > 2 and r < 0.1 for c, r in zip(colours, roughness, strict=True)]
    assert any(checkerboards) and any(noise) and any(blurred)
    assert sum(checkerboards) + sum(noise) + sum(blurred) == 60
