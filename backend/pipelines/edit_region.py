"""Confining an edit to a region box (3DDesigner / Blended Diffusion: change the inside, keep or
restore the original outside).

The region is an axis-aligned box in WORLD space; every inside test maps points to world first,
so any mesh transform (rotation, scale, shear) is handled.

- Texture mode: a texel may change only if the surface point it shows lies inside the box
  (`texel_region`); texels no triangle covers (chart gutters) may follow their edited
  neighbours, they show no surface point.
- Shape mode: after every optimiser step the voxels whose centres lie outside the box get their
  original density and albedo back (`FrozenVoxels`), so the field outside never changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from backend.export.texture_bake import TexelSamples
from backend.field.grid_field import DenseGridField
from backend.field.mesh_to_field import voxel_centres
from backend.pipelines.edit_source import UnitFrame, transform_points


@dataclass(frozen=True)
class RegionBox:
    """World-space box lo <= p <= hi."""

    lo: np.ndarray
    """[3] minimum corner (x0, y0, z0)."""
    hi: np.ndarray
    """[3] maximum corner (x1, y1, z1)."""

    @classmethod
    def from_request(cls, region: Sequence[float] | None) -> RegionBox | None:
        """The request's (x0, y0, z0, x1, y1, z1), or None for "edit everything"."""
        if region is None:
            return None
        values = np.asarray(region, dtype=np.float64)
        return cls(lo=values[:3], hi=values[3:])

    def contains(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] world points -> [N] bool."""
        return ((points >= self.lo) & (points <= self.hi)).all(axis=-1)


def inside(region: RegionBox | None, points: np.ndarray) -> np.ndarray:
    """[N, 3] world points -> [N] bool; everything is inside when there is no region."""
    if region is None:
        return np.ones(len(points), dtype=bool)
    return region.contains(points)


@dataclass(frozen=True, eq=False)
class TexelRegion:
    """Which texels of one texture an edit may change."""

    covered: np.ndarray
    """[H, W] bool: texels that show a surface point."""
    editable: np.ndarray
    """[H, W] bool: covered texels whose surface point lies inside the region."""

    def with_gutters(self, padding: int) -> np.ndarray:
        """[H, W] bool: editable texels plus the uncovered texels within `padding` texels of
        them (the gutters that follow an edited chart)."""
        if padding <= 0 or not self.editable.any():
            return self.editable.copy()
        near = ndimage.binary_dilation(self.editable, iterations=padding)
        return self.editable | (near & ~self.covered)


def texel_region(
    samples: TexelSamples,
    size: tuple[int, int],
    to_world: np.ndarray,
    region: RegionBox | None,
) -> TexelRegion:
    """Region masks of a (height, width) texture from its texel samples (part-local surface
    points) and the part's [4, 4] local-to-world matrix."""
    covered = np.zeros(size, dtype=bool)
    covered[samples.rows, samples.cols] = True
    editable = np.zeros(size, dtype=bool)
    keep = inside(region, transform_points(to_world, samples.points))
    editable[samples.rows[keep], samples.cols[keep]] = True
    return TexelRegion(covered=covered, editable=editable)


class FrozenVoxels:
    """after_step hook: voxels outside the region get their original values back.

    `field.density_grid` and `field.albedo_grid` are blended with copies taken at construction,
    theta <- m * theta + (1 - m) * theta_original, with m = 1 for voxels whose centre (mapped to
    world through `frame`) is inside the region, 0 outside.
    """

    def __init__(self, field: DenseGridField, frame: UnitFrame, region: RegionBox) -> None:
        self.field = field
        centres = voxel_centres(field.config).reshape(-1, 3).numpy()
        keep = inside(region, frame.to_world(centres))
        r = field.config.resolution
        device = field.density_grid.device
        self.editable = torch.from_numpy(keep).view(1, 1, r, r, r).to(device)
        self.density = field.density_grid.detach().clone()
        self.albedo = field.albedo_grid.detach().clone()

    @property
    def any_editable(self) -> bool:
        """Whether any voxel centre lies inside the region."""
        return bool(self.editable.any())

    @torch.no_grad()
    def __call__(self) -> None:
        self.field.density_grid.copy_(
            torch.where(self.editable, self.field.density_grid, self.density)
        )
        self.field.albedo_grid.copy_(
            torch.where(self.editable, self.field.albedo_grid, self.albedo)
        )
