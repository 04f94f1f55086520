"""View-dependent prompting (DreamFusion 3.2): a suffix naming the side the camera sees.

Thresholds (threestudio / stable-dreamfusion): overhead when elevation > 60 degrees; otherwise
front when |azimuth| < 45, back when |azimuth| > 135, side in between. Azimuth 0 is the front
(camera on -Y, see `backend.render.cameras`).
"""

from __future__ import annotations

import enum

import torch

OVERHEAD_ELEVATION_DEG = 60.0
FRONT_MAX_AZIMUTH_DEG = 45.0
BACK_MIN_AZIMUTH_DEG = 135.0


class View(enum.IntEnum):
    """The view classes; each has its own text embedding, computed once per job."""

    FRONT = 0
    SIDE = 1
    BACK = 2
    OVERHEAD = 3


def wrap_azimuth(azimuth_deg: float) -> float:
    """Azimuth into (-180, 180]."""
    wrapped = (azimuth_deg + 180.0) % 360.0 - 180.0
    return 180.0 if wrapped == -180.0 else wrapped


def view_of(elevation_deg: float, azimuth_deg: float) -> View:
    """The view class of one camera."""
    if elevation_deg > OVERHEAD_ELEVATION_DEG:
        return View.OVERHEAD
    azimuth = abs(wrap_azimuth(azimuth_deg))
    if azimuth < FRONT_MAX_AZIMUTH_DEG:
        return View.FRONT
    if azimuth > BACK_MIN_AZIMUTH_DEG:
        return View.BACK
    return View.SIDE


def views_of(elevation_deg: torch.Tensor, azimuth_deg: torch.Tensor) -> torch.Tensor:
    """[B] elevation, azimuth (degrees) -> [B] View indices."""
    return torch.tensor(
        [int(view_of(float(e), float(a))) for e, a in zip(elevation_deg, azimuth_deg, strict=True)],
        dtype=torch.long,
    )


def view_suffix(elevation_deg: float, azimuth_deg: float) -> str:
    """ ", front view" etc. for one camera."""
    return f", {view_of(elevation_deg, azimuth_deg).name.lower()} view"


def view_prompts(prompt: str) -> list[str]:
    """The prompt with each view suffix, indexed by View."""
    return [f"{prompt}, {view.name.lower()} view" for view in View]
