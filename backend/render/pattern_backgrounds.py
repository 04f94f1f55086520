"""Dream Fields' random image backgrounds: checkerboards, white noise and blurred noise.

Dream Fields (Jain et al., CVPR 2022, section 4.2) composites every render over a random
background so that the object cannot hide in the background (a plain background invites CLIP
guidance to paint the prompt on it as a flat colour, or to leave the scene empty). A view's
render with coverage alpha composites as  I = rgb * alpha + B * (1 - alpha)  (premultiplied:
I = C + (1 - alpha) B for a render C made over black).
"""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F


class BackgroundKind(enum.IntEnum):
    """The kinds of random backgrounds."""

    CHECKERBOARD = 0
    NOISE = 1
    BLURRED_NOISE = 2


def _checkerboards(b: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """[B, 3, H, W] checkerboards of two random colours, 2-8 squares across."""
    squares = torch.randint(2, 9, (b,), generator=generator).float()
    ys = torch.arange(h).float()[None, :, None] / h
    xs = torch.arange(w).float()[None, None, :] / w
    parity = ((ys * squares[:, None, None]).floor() + (xs * squares[:, None, None]).floor()) % 2
    a, c = torch.rand(2, b, 3, 1, 1, generator=generator)
    return a + (c - a) * parity[:, None]


def _blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of images [B, 3, H, W] with per-image std `sigma` [B] in pixels."""
    radius = max(1, int(3 * float(sigma.max())))
    x = torch.arange(-radius, radius + 1).float()
    kernel = torch.exp(-0.5 * (x[None] / sigma[:, None].clamp(min=1e-3)) ** 2)  # [B, K]
    kernel = kernel / kernel.sum(-1, keepdim=True)
    b, c, h, w = images.shape
    padded = F.pad(images.reshape(1, b * c, h, w), (radius,) * 4, mode="reflect")
    k = kernel.repeat_interleave(c, dim=0)  # [B * 3, K]
    rows = F.conv2d(padded, k[:, None, :, None], groups=b * c)
    return F.conv2d(rows, k[:, None, None, :], groups=b * c).view(b, c, h, w)


def sample_pattern_backgrounds(
    batch: int, height: int, width: int, generator: torch.Generator
) -> torch.Tensor:
    """[B, 3, H, W] random backgrounds in [0, 1], each a checkerboard, uniform white noise or
    noise blurred by a Gaussian of std U(1, H / 4) pixels (equal odds)."""
    kind = torch.randint(0, len(BackgroundKind), (batch,), generator=generator)
    checker = _checkerboards(batch, height, width, generator)
    noise = torch.rand(batch, 3, height, width, generator=generator)
    sigma = 1.0 + (height / 4 - 1.0) * torch.rand(batch, generator=generator)
    blurred = _blur(torch.rand(batch, 3, height, width, generator=generator), sigma)
    # Stretch the blurred noise back to [0, 1] per image (blurring pulls it toward grey).
    lo = blurred.amin(dim=(1, 2, 3), keepdim=True)
    hi = blurred.amax(dim=(1, 2, 3), keepdim=True)
    blurred = (blurred - lo) / (hi - lo).clamp(min=1e-6)
    pick = kind.view(batch, 1, 1, 1)
    return torch.where(
        pick == BackgroundKind.CHECKERBOARD,
        checker,
        torch.where(pick == BackgroundKind.NOISE, noise, blurred),
    )
