"""Preview images of a field: a strip of fixed views (front, side, back, three-quarter top),
encoded as PNG for progress events, and turntable frames for the README and result previews."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from backend.render.cameras import Cameras, orbit_cameras
from backend.render.renderer import RenderableField, RenderConfig, RenderOutput, render
from backend.render.shading import ShadingMode

PREVIEW_BACKGROUND = 0.85
"""Grey level behind previews."""


def fixed_cameras(
    azimuths_deg: list[float],
    elevation_deg: float = 20.0,
    distance: float = 2.2,
    fovy_deg: float = 45.0,
    target: torch.Tensor | None = None,
    scale: float = 1.0,
) -> Cameras:
    """Cameras on an orbit at the given azimuths (degrees)."""
    n = len(azimuths_deg)
    return orbit_cameras(
        torch.full((n,), elevation_deg),
        torch.tensor(azimuths_deg, dtype=torch.float32),
        torch.full((n,), distance * scale),
        torch.full((n,), fovy_deg),
        target=target,
    )


@torch.no_grad()
def render_views(
    field: RenderableField,
    cameras: Cameras,
    size: int,
    samples: RenderConfig = RenderConfig(32, 32),
    renderer: Callable[..., RenderOutput] = render,
) -> torch.Tensor:
    """Lit renders of `field` from `cameras` by `renderer` (the volume renderer, or the mesh
    renderer for a refined surface) -> [B, 3, size, size] in [0, 1]."""
    b = len(cameras)
    device = next(iter(field.parameters())).device if hasattr(field, "parameters") else "cpu"
    out = renderer(
        field,
        cameras.to(device),
        size,
        size,
        torch.full((b,), int(ShadingMode.LIT)),
        torch.full((b, 3), PREVIEW_BACKGROUND),
        samples,
    )
    return out.rgb.clamp(0, 1).cpu()


def to_strip(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [0, 1] -> uint8 [H, B*W, 3] side by side."""
    arr = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return np.concatenate(list(arr), axis=1)


def png_bytes(image: np.ndarray, upscale: int = 1) -> bytes:
    """uint8 [H, W, 3] -> PNG bytes (nearest-neighbour upscaled)."""
    pil = Image.fromarray(image)
    if upscale > 1:
        pil = pil.resize((pil.width * upscale, pil.height * upscale), Image.NEAREST)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def preview_png(
    field: RenderableField, size: int = 64, renderer: Callable[..., RenderOutput] = render
) -> bytes:
    """PNG strip of four views of the field (front, side, back, other side)."""
    cameras = fixed_cameras([0.0, 90.0, 180.0, -90.0])
    views = render_views(field, cameras, size, renderer=renderer)
    return png_bytes(to_strip(views), upscale=max(1, 128 // size))


def save_turntable(
    field: RenderableField,
    path: str,
    frames: int = 24,
    size: int = 128,
    renderer: Callable[..., RenderOutput] = render,
) -> None:
    """Write an animated GIF of the field turning once (elevation 20 degrees)."""
    azimuths = [360.0 * i / frames - 180.0 for i in range(frames)]
    images = render_views(field, fixed_cameras(azimuths), size, renderer=renderer)
    arr = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    pil_frames = [Image.fromarray(a) for a in arr]
    pil_frames[0].save(path, save_all=True, append_images=pil_frames[1:], duration=80, loop=0)
