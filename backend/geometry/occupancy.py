"""Which cells of a field's cube can hold density (instant-NGP / nerfacc's occupancy grid): a
coarse boolean grid over [-bound, bound]^3 that the renderer uses to clip rays to the occupied
box and to skip samples in empty cells. It is the contract between field/ (which bounds its own
density per cell) and render/ (which skips what is empty)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class OccupancyConfig:
    """How a field's density is summarised into occupied cells."""

    threshold: float = 0.03
    """A cell is occupied where an upper bound of its density (per unit length) exceeds this;
    skipping a cell below it changes a ray's optical depth by at most threshold x its length
    in the cell (docs/research/empty-space-skipping.md)."""
    cell_voxels: int = 4
    """Edge of a cell in voxels of the field's grid (a 64^3 grid gives 16^3 cells)."""
    dilation: int = 1
    """Cells around every occupied cell that are marked occupied too: the margin into which
    a surface can grow before the next refresh and still be sampled."""


@dataclass
class Occupancy:
    """Occupied cells of the cube [low, low + C * cell_size]^3 (C cells a side)."""

    cells: torch.Tensor
    """[C, C, C] bool, axes (z, y, x) like the field's grids."""
    low: float
    """World coordinate of the cell grid's lower corner on every axis."""
    cell_size: float
    """Edge of a cell in world units."""

    def box(self, bound: float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(low [3], high [3]) in (x, y, z) of the occupied cells' bounding box within the
        cube [-bound, bound]^3; None when no cell is occupied."""
        index = self.cells.nonzero()  # [K, 3] (z, y, x)
        if index.shape[0] == 0:
            return None
        first = index.min(dim=0).values.flip(0).to(torch.float32)
        last = index.max(dim=0).values.flip(0).to(torch.float32)
        low = self.low + first * self.cell_size
        high = self.low + (last + 1.0) * self.cell_size
        return low.clamp(-bound, bound), high.clamp(-bound, bound)

    def contains(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] points (x, y, z) -> [N] bool: inside an occupied cell."""
        c = self.cells.shape[0]
        index = ((points - self.low) / self.cell_size).floor().long()  # [N, 3] (x, y, z)
        inside = ((index >= 0) & (index < c)).all(dim=-1)
        index = index.clamp(0, c - 1)
        return inside & self.cells[index[:, 2], index[:, 1], index[:, 0]]


def occupied_cells(upper_density: torch.Tensor, config: OccupancyConfig) -> torch.Tensor:
    """[C, C, C] upper bounds of each cell's density -> [C, C, C] bool occupancy, above
    `config.threshold` and dilated by `config.dilation` cells."""
    occupied = (upper_density > config.threshold).float()[None, None]
    d = config.dilation
    if d > 0:
        occupied = F.max_pool3d(occupied, kernel_size=2 * d + 1, stride=1, padding=d)
    return occupied[0, 0] > 0
