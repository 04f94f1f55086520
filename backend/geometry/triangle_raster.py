"""Coverage of a pixel grid by 2D triangles: every (pixel, triangle) pair whose pixel centre lies
inside the triangle, with its barycentric coordinates. Pure torch, vectorised, no gradient.

The mesh renderer uses it in screen space (then keeps the nearest triangle per pixel); the mesh
voxeliser uses it in orthographic projections (and keeps every crossing of a voxel column).

Pixel (row i, col j) of an H x W grid has its centre at continuous coordinates (x, y) = (j, i).
Each triangle only tests the pixels of its bounding box, in chunks of at most `max_pairs`
candidates (a triangle covering the whole image is its own chunk).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

MAX_PAIRS = 2_000_000
"""Default bound on the (pixel, triangle) candidates tested at once (memory of one chunk)."""


@dataclass(frozen=True, eq=False)
class Coverage:
    """Pixel-triangle pairs of one chunk: K pairs whose pixel centre is inside the triangle."""

    pixels: torch.Tensor
    """[K] int64 flat pixel index row * W + col."""
    triangles: torch.Tensor
    """[K] int64 triangle index."""
    barycentric: torch.Tensor
    """[K, 3] float weights of the triangle's corners at the pixel centre (2D, not
    perspective-corrected)."""


def triangle_coverage(
    x: torch.Tensor,
    y: torch.Tensor,
    height: int,
    width: int,
    tolerance: float = 1e-7,
    max_pairs: int = MAX_PAIRS,
) -> Iterator[Coverage]:
    """Rasterise T triangles given by corner coordinates x, y: [T, 3] in pixel units.

    Yields Coverage chunks (triangles in ascending order across chunks). A pixel centre counts
    as inside when every barycentric weight is >= -tolerance, so pixels on a shared edge go to
    both triangles. Triangles with (near) zero area, NaN corners or outside the grid give none.
    """
    with torch.no_grad():
        x = x.double()
        y = y.double()
        x0, x1, x2 = x.unbind(-1)
        y0, y1, y2 = y.unbind(-1)
        # Twice the signed area d; barycentric weights (x, y) -> l0, l1 (l2 = 1 - l0 - l1):
        #   l0 = ((y1 - y2)(x - x2) + (x2 - x1)(y - y2)) / d
        #   l1 = ((y2 - y0)(x - x2) + (x0 - x2)(y - y2)) / d
        d = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        valid = torch.isfinite(d) & (d.abs() > 1e-12)

        col_lo = x.amin(-1).ceil().clamp(0, width).nan_to_num(width).long()
        col_hi = x.amax(-1).floor().clamp(-1, width - 1).nan_to_num(-1).long()
        row_lo = y.amin(-1).ceil().clamp(0, height).nan_to_num(height).long()
        row_hi = y.amax(-1).floor().clamp(-1, height - 1).nan_to_num(-1).long()
        box_w = (col_hi - col_lo + 1).clamp(min=0)
        box_h = (row_hi - row_lo + 1).clamp(min=0)
        counts = torch.where(valid, box_w * box_h, 0)

        ends = counts.cumsum(0)
        first = 0
        n = len(counts)
        while first < n:
            start = int(ends[first - 1]) if first > 0 else 0
            last = max(first + 1, int(torch.searchsorted(ends, start + max_pairs, right=True)))
            group = torch.arange(first, min(last, n), device=x.device)
            first = int(group[-1]) + 1
            group_counts = counts[group]
            total = int(group_counts.sum())
            if total == 0:
                continue
            # Candidate c is the local[c]-th pixel (row-major) of triangle tri[c]'s box.
            tri = torch.repeat_interleave(group, group_counts)
            offsets = torch.repeat_interleave(group_counts.cumsum(0) - group_counts, group_counts)
            local = torch.arange(total, device=x.device) - offsets
            rows = row_lo[tri] + local // box_w[tri]
            cols = col_lo[tri] + local % box_w[tri]

            dx = cols - x2[tri]
            dy = rows - y2[tri]
            dd = d[tri]
            l0 = ((y1 - y2)[tri] * dx + (x2 - x1)[tri] * dy) / dd
            l1 = ((y2 - y0)[tri] * dx + (x0 - x2)[tri] * dy) / dd
            l2 = 1.0 - l0 - l1
            inside = (l0 >= -tolerance) & (l1 >= -tolerance) & (l2 >= -tolerance)
            yield Coverage(
                pixels=(rows * width + cols)[inside],
                triangles=tri[inside],
                barycentric=torch.stack([l0, l1, l2], -1)[inside],
            )
