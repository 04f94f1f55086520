"""Density field → triangle mesh by marching cubes, in two passes.

Pass 1 samples a coarse grid over the whole cube [-bound, bound]^3 and finds the box that
holds the object. Pass 2 samples a fine grid over that box plus a margin and runs marching cubes
(scikit-image) on it. The fine grid is padded with one layer of empty samples, so the surface is
closed even where the object touches the cube's faces.

The iso-level is given, or chosen by a rule of `backend.export.iso_level`: "silhouette" (the
default) on the fine grid, with the box taken around everything above its lowest candidate
level; threestudio's "auto" on the coarse grid, with the box taken at that level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from skimage import measure

from backend.export.errors import MeshError
from backend.export.iso_level import auto_threshold, check_not_empty, silhouette_threshold

DensityFn = Callable[[torch.Tensor], torch.Tensor]
"""points [N, 3] float32 -> density [N]."""


@dataclass(frozen=True)
class MarchingConfig:
    """How the density field is sampled and where its surface is drawn."""

    coarse_resolution: int = 64
    """Samples per axis of the first pass over the whole cube [-bound, bound]^3."""
    fine_resolution: int = 128
    """Samples along the longest side of the object's box in the second pass; the other sides
    get about the same spacing (near-cubic voxels)."""
    threshold: float | Literal["silhouette", "auto"] = "silhouette"
    """Iso-level on the density, or a rule of `backend.export.iso_level`: "silhouette" (the
    surface outlines what renders of the field show) or "auto" (threestudio's)."""
    auto_eps: float = 1e-5
    """Densities above this count toward the mean of the "auto" level (threestudio's eps); a
    field whose peak is not above it is empty."""
    auto_clip: tuple[float, float] = (0.05, 0.5)
    """The "auto" level is clipped to these fractions of the peak coarse density."""
    silhouette_search: tuple[float, float] = (0.01, 0.9)
    """The "silhouette" level is searched between these fractions of the peak density; the
    lower one also bounds the object box of pass 1."""
    silhouette_candidates: int = 48
    """Levels tried by the "silhouette" rule (geometric spacing)."""
    margin: float = 0.1
    """The fine box is the coarse object box grown by this fraction of its size on each side
    (clipped to the cube)."""
    chunk_size: int = 65_536
    """Points per density query."""

    def __post_init__(self) -> None:
        if self.coarse_resolution < 8 or self.fine_resolution < 8:
            raise ValueError("marching resolutions must be at least 8")
        if self.threshold not in ("silhouette", "auto") and not (
            isinstance(self.threshold, int | float) and self.threshold > 0
        ):
            raise ValueError(
                f'threshold must be "silhouette", "auto" or > 0, got {self.threshold!r}'
            )
        low, high = self.auto_clip
        if not 0 < low <= high < 1:
            raise ValueError(f"auto_clip must satisfy 0 < low <= high < 1, got {self.auto_clip}")
        low, high = self.silhouette_search
        if not 0 < low < high < 1 or self.silhouette_candidates < 2:
            raise ValueError(
                "silhouette_search must satisfy 0 < low < high < 1 and silhouette_candidates "
                f"must be >= 2, got {self.silhouette_search} and {self.silhouette_candidates}"
            )


@dataclass(frozen=True, eq=False)
class Isosurface:
    """A marching-cubes surface in the field's local coordinates."""

    vertices: np.ndarray
    """[V, 3] float64 positions."""
    faces: np.ndarray
    """[F, 3] int64 vertex indices, counter-clockwise seen from outside (normals outward)."""
    threshold: float
    """The iso-level that was used."""
    box_min: np.ndarray
    """[3] float64 lower corner of the fine grid."""
    box_max: np.ndarray
    """[3] float64 upper corner of the fine grid."""


def sample_grid(
    density_fn: DensityFn,
    box_min: np.ndarray,
    box_max: np.ndarray,
    shape: tuple[int, int, int],
    chunk_size: int = 65_536,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Density at the nodes of a regular grid spanning [box_min, box_max] (corners included).

    Returns [nx, ny, nz] float32, axis order x, y, z. Points are built and queried chunk by
    chunk without gradients, so a 256^3 grid never materialises as one [N, 3] tensor.
    """
    nx, ny, nz = shape
    axes = [
        torch.linspace(float(lo), float(hi), n, dtype=torch.float32, device=device)
        for lo, hi, n in zip(box_min, box_max, shape, strict=True)
    ]
    total = nx * ny * nz
    values = np.empty(total, dtype=np.float32)
    with torch.no_grad():
        for start in range(0, total, chunk_size):
            flat = torch.arange(start, min(start + chunk_size, total), device=device)
            # Flat index -> (i, j, k) in C order, matching values.reshape(nx, ny, nz).
            i = flat // (ny * nz)
            j = (flat // nz) % ny
            k = flat % nz
            points = torch.stack([axes[0][i], axes[1][j], axes[2][k]], dim=-1)
            sigma = density_fn(points).reshape(-1)
            values[start : start + len(flat)] = sigma.float().cpu().numpy()
    return values.reshape(nx, ny, nz)


def object_box(
    densities: np.ndarray,
    threshold: float,
    box_min: np.ndarray,
    box_max: np.ndarray,
    margin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The box around grid samples above `threshold`, grown by one grid step (the surface lies
    between an inside sample and its outside neighbour) and by `margin` of its size per side,
    clipped to [box_min, box_max]. Returns (lower [3], upper [3]) float64."""
    inside = np.argwhere(densities > threshold)
    if len(inside) == 0:
        raise MeshError(
            f"no density above the threshold {threshold:.3g} "
            f"(largest density {float(densities.max()):.3g})",
            "density",
        )
    step = (box_max - box_min) / (np.array(densities.shape) - 1)
    lower = box_min + (inside.min(axis=0) - 1) * step
    upper = box_min + (inside.max(axis=0) + 1) * step
    grow = margin * (upper - lower)
    return np.maximum(lower - grow, box_min), np.minimum(upper + grow, box_max)


def marching_cubes(
    density_fn: DensityFn,
    bound: float,
    config: MarchingConfig = MarchingConfig(),
    device: torch.device | str = "cpu",
) -> Isosurface:
    """Two-pass marching cubes of a density field in [-bound, bound]^3 (see the module doc)."""
    cube_min = np.full(3, -bound, dtype=np.float64)
    cube_max = np.full(3, bound, dtype=np.float64)

    # Pass 1: coarse grid over the whole cube -> object box (and the "auto" level).
    n = config.coarse_resolution
    coarse = sample_grid(density_fn, cube_min, cube_max, (n, n, n), config.chunk_size, device)
    if not np.isfinite(coarse).all():
        raise MeshError("the field returned NaN or infinite densities", "density")
    if config.threshold == "auto":
        threshold = auto_threshold(coarse, config.auto_eps, config.auto_clip)
    elif config.threshold == "silhouette":
        # The box holds all but the faintest haze; the level is chosen on the finer grid.
        threshold = config.silhouette_search[0] * check_not_empty(coarse, config.auto_eps)
    else:
        threshold = float(config.threshold)
    box_min, box_max = object_box(coarse, threshold, cube_min, cube_max, config.margin)

    # Pass 2: fine grid over the box, near-cubic voxels: the longest side gets
    # `fine_resolution` samples, the others as many as that spacing needs (at least 2).
    extent = box_max - box_min
    spacing = extent.max() / (config.fine_resolution - 1)
    shape = tuple(int(max(2, round(e / spacing) + 1)) for e in extent)
    fine = sample_grid(density_fn, box_min, box_max, shape, config.chunk_size, device)
    if not np.isfinite(fine).all():
        raise MeshError("the field returned NaN or infinite densities", "density")

    step = extent / (np.array(shape) - 1)
    if config.threshold == "silhouette":
        level = silhouette_threshold(
            fine, step, config.silhouette_search, config.silhouette_candidates, config.auto_eps
        )
        threshold = (
            level
            if level is not None
            else auto_threshold(coarse, config.auto_eps, config.auto_clip)
        )

    # One layer of zero density (below any level > 0) around the grid closes the surface where
    # the object meets the box; it shifts the grid origin by one step.
    padded = np.pad(fine, 1, mode="constant", constant_values=0.0)
    vertices, faces, _, _ = measure.marching_cubes(
        padded, level=threshold, spacing=tuple(step), allow_degenerate=False
    )
    if len(faces) == 0:
        raise MeshError(f"marching cubes found no surface at level {threshold:.3g}", "density")
    vertices = vertices.astype(np.float64) + (box_min - step)
    # scikit-image winds faces clockwise when the inside holds the larger values, i.e. its
    # normals point into a density blob; swapping two corners turns them outward.
    faces = faces[:, [0, 2, 1]].astype(np.int64)
    return Isosurface(vertices, faces, threshold, box_min, box_max)
