"""Dense voxel grid field: volume density and albedo in the cube [-bound, bound]^3.

The representation the CPU path optimises (a 64^3 grid renders forward+backward about 4x faster
than a small MLP on a 2-core CPU) and the one SJC uses. Channels of one grid:

    raw density s(x)  (trilinear)      sigma(x) = k softplus(s(x) + b(x))
    albedo logits (3)                   a(x) = sigmoid(logits(x))

with the DreamFusion/threestudio "blob" bias b(x) = blob_density * (1 - |x| / blob_radius),
so optimisation starts from a soft centred ball, and k the density scale. Normals are
n = -grad(sigma)/|grad(sigma)|, computed from finite differences of the raw grid (sampled
trilinearly) plus the analytic gradient of the blob bias, so they are differentiable in the
grid values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend import cpu_build
from backend.field import cpu_field_table, cpu_trilinear
from backend.field.total_variation import charbonnier_variation, squared_variation
from backend.geometry.field_samples import FieldSamples
from backend.geometry.occupancy import Occupancy, OccupancyConfig, occupied_cells


@dataclass(frozen=True)
class GridFieldConfig:
    """Shape and initialisation of a dense grid field."""

    resolution: int = 64
    """Voxels per side."""
    bound: float = 1.0
    """The field covers [-bound, bound]^3 in its local frame."""
    blob_density: float = 10.0
    """Raw density bias at the centre (threestudio default 10)."""
    blob_radius: float = 0.5
    """Radius where the blob bias crosses zero (threestudio default 0.5)."""
    density_scale: float = 1.0
    """k in sigma = k softplus(s + b): how opaque a raw value is. A larger k lets the optimiser
    make a surface opaque with smaller raw steps, which the total variation charges less for."""
    init_albedo: float = 0.5
    """Initial albedo (grey)."""


MIN_POINTS_PER_BATCH = 4096
"""Fewest points a CPU grid-sampler lookup hands to one thread (`sampler_batches`)."""
MAX_GRADIENT_COPIES = 32 * 1024 * 1024
"""Most grid values the per-batch gradient copies of a grid-sampler backward may hold
together (128 MB in fp32; `sampler_batches`)."""


def sampler_batches(grid: torch.Tensor, points: int) -> int:
    """How many batches a grid-sampler lookup of `points` points in `grid` [1, C, r, r, r] is
    split into, where the C kernel does not take it (no compiler, or points that need a
    gradient).

    PyTorch's CPU grid sampler runs the batch dimension in parallel and each batch item on one
    thread, so one batch of N points leaves every other core idle. On CPU the points are split
    into one batch per torch thread (2 threads: forward 0.51x, forward + backward 0.56x;
    docs/research/cpu-render-speed.md), each batch at least `MIN_POINTS_PER_BATCH` points,
    and no more batches than keep the backward's per-batch gradient copies of the grid under
    `MAX_GRADIENT_COPIES` values. Other devices, and the reference path, parallelise over
    points: one batch."""
    if grid.device.type != "cpu" or cpu_build.on_reference_path():
        return 1
    by_points = points // MIN_POINTS_PER_BATCH
    by_memory = MAX_GRADIENT_COPIES // grid.numel()
    return max(1, min(torch.get_num_threads(), by_points, by_memory))


def sample_grid(grid: torch.Tensor, points: torch.Tensor, bound: float) -> torch.Tensor:
    """Trilinear lookup of a grid [1, C, r, r, r] spanning [-bound, bound]^3 (axes z, y, x;
    corners on the cube's corners) at points [N, 3] -> [N, C]; border-clamped outside.

    On CPU the C kernel of `cpu_trilinear` (2026-12-07: forward + backward 0.26x of the grid
    sampler's split per thread on 2 threads) unless the points need a gradient; otherwise
    `F.grid_sample`, in `sampler_batches` batches of the same grid (an expanded view, no
    copy), which gives the same values up to float rounding. The reference path always takes
    the grid sampler in one batch."""
    if cpu_trilinear.supports(grid, points):
        return cpu_trilinear.trilinear_lookup(grid, points, bound)
    n, c = points.shape[0], grid.shape[1]
    batches = sampler_batches(grid, n)
    per_batch = -(-n // batches)
    coords = (points / bound).to(grid.dtype)
    if per_batch * batches != n:  # pad to equal batches; the padding's values are dropped
        coords = torch.cat([coords, coords.new_zeros(per_batch * batches - n, 3)])
    out = F.grid_sample(
        grid.expand(batches, -1, -1, -1, -1),
        coords.view(batches, per_batch, 1, 1, 3),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )  # [batches, C, per_batch, 1, 1]
    return out.view(batches, c, per_batch).permute(0, 2, 1).reshape(-1, c)[:n]


def _length(points: torch.Tensor) -> torch.Tensor:
    """|x| of [N, 3] points -> [N]."""
    return points.square().sum(dim=-1).sqrt()


class DenseGridField(torch.nn.Module):
    """Density + albedo on a dense voxel grid (see module docstring)."""

    def __init__(self, config: GridFieldConfig = GridFieldConfig()) -> None:
        super().__init__()
        self.config = config
        r = config.resolution
        self.density_grid = torch.nn.Parameter(torch.zeros(1, 1, r, r, r))
        logit = torch.logit(torch.tensor(config.init_albedo)).item()
        self.albedo_grid = torch.nn.Parameter(torch.full((1, 3, r, r, r), logit))

    @property
    def bound(self) -> float:
        return self.config.bound

    def blob_bias(self, points: torch.Tensor, radius: torch.Tensor | None = None) -> torch.Tensor:
        """b(x) = blob_density * (1 - |x| / blob_radius); [N, 3] -> [N]. `radius`: |x| [N] when
        the caller has it."""
        c = self.config
        radius = _length(points) if radius is None else radius
        return c.blob_density * (1.0 - radius / c.blob_radius)

    def _inside(self, points: torch.Tensor) -> torch.Tensor:
        """[N, 3] -> [N] bool: in the bounding cube."""
        return points.abs().amax(dim=-1) <= self.config.bound

    def _spacing(self) -> float:
        """World distance between neighbouring voxels."""
        return 2.0 * self.config.bound / (self.config.resolution - 1)

    def _raw_gradient_grid(self) -> torch.Tensor:
        """Central differences of the raw density grid, in world units: [1, 3, r, r, r]
        ordered (d/dx, d/dy, d/dz). Grid axes are (z, y, x)."""
        g = F.pad(self.density_grid, (1, 1, 1, 1, 1, 1), mode="replicate")
        spacing = self._spacing()
        ddx = (g[..., 1:-1, 1:-1, 2:] - g[..., 1:-1, 1:-1, :-2]) / (2 * spacing)
        ddy = (g[..., 1:-1, 2:, 1:-1] - g[..., 1:-1, :-2, 1:-1]) / (2 * spacing)
        ddz = (g[..., 2:, 1:-1, 1:-1] - g[..., :-2, 1:-1, 1:-1]) / (2 * spacing)
        return torch.cat([ddx, ddy, ddz], dim=1)

    def _sample(self, grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Trilinear lookup of [1, C, r, r, r] at [N, 3] -> [N, C]; border-clamped outside."""
        return sample_grid(grid, points, self.config.bound)

    def raw_density(self, points: torch.Tensor) -> torch.Tensor:
        """s(x) + b(x) before the softplus; [N, 3] -> [N]."""
        return self._sample(self.density_grid, points)[:, 0] + self.blob_bias(points)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """sigma(x) >= 0; [N, 3] -> [N]. Zero outside the bounding cube."""
        return (
            self.config.density_scale * F.softplus(self.raw_density(points)) * self._inside(points)
        )

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """a(x) in [0, 1]; [N, 3] -> [N, 3]."""
        return torch.sigmoid(self._sample(self.albedo_grid, points))

    def _lookup_all(self, points: torch.Tensor) -> torch.Tensor:
        """Raw density, albedo logits and the raw density's gradient (d/dx, d/dy, d/dz) at
        [N, 3] points -> [N, 7], in one lookup: of the table `cpu_field_table` builds where
        the CPU kernels take it (2026-12-07: 2.1 against 7.9 ms a preview render on 2 threads),
        else of the three grids concatenated."""
        if cpu_field_table.supports(self.density_grid, self.albedo_grid) and (
            cpu_trilinear.supports(self.density_grid, points)
        ):
            table = cpu_field_table.field_table(
                self.density_grid, self.albedo_grid, self._spacing()
            )
            return cpu_trilinear.table_lookup(table, points, self.config.bound)
        grid = torch.cat([self.density_grid, self.albedo_grid, self._raw_gradient_grid()], dim=1)
        return self._sample(grid, points)

    def forward(self, points: torch.Tensor) -> FieldSamples:
        """Density, albedo and normals at [N, 3] points in one grid lookup."""
        # One split, not slices: the backward fills one [N, 7] gradient instead of zeroing one
        # per slice and summing them (fills of 7 ms a preview step on 2 threads, now 1.5 ms).
        raw, logits, raw_gradient = self._lookup_all(points).split((1, 3, 3), dim=1)
        c = self.config
        radius = _length(points)
        density = c.density_scale * F.softplus(raw[:, 0] + self.blob_bias(points, radius))
        density = density * self._inside(points)
        # grad b(x) = -(blob_density / blob_radius) x / |x|
        blob_gradient = points / radius.clamp(min=1e-12)[:, None]
        gradient = raw_gradient - (c.blob_density / c.blob_radius) * blob_gradient
        return FieldSamples(
            density=density,
            albedo=torch.sigmoid(logits),
            normal=-F.normalize(gradient, dim=-1),
        )

    @torch.no_grad()
    def occupancy(self, config: OccupancyConfig) -> Occupancy:
        """Cells of `config.cell_voxels` voxels a side whose density can exceed the threshold.

        Upper bound in a cell: sigma <= k softplus(max s + max b), as a trilinear s never
        exceeds the grid values at the cell's vertices, and b(x) = b_0 (1 - |x| / r_b) is
        largest at the cell's point nearest the origin (farthest when b_0 < 0).
        """
        c = self.config
        n = config.cell_voxels
        count = -(-(c.resolution - 1) // n)  # cells a side, covering every voxel
        pad = count * n + 1 - c.resolution  # vertices past the last one (border-clamped)
        raw = F.pad(self.density_grid, (0, pad) * 3, mode="replicate")
        raw_max = F.max_pool3d(raw, kernel_size=n + 1, stride=n)[0, 0]  # [C, C, C]
        cell_size = n * 2.0 * c.bound / (c.resolution - 1)
        low = -c.bound + cell_size * torch.arange(count, dtype=raw.dtype, device=raw.device)
        high = low + cell_size
        if c.blob_density >= 0:  # |x| of the nearest point, per axis
            reach = torch.where(low > 0, low, torch.where(high < 0, -high, 0.0))
        else:  # of the farthest point
            reach = torch.maximum(low.abs(), high.abs())
        square = reach.square()
        distance = (square[:, None, None] + square[None, :, None] + square[None, None, :]).sqrt()
        blob_max = c.blob_density * (1.0 - distance / c.blob_radius)
        upper = c.density_scale * F.softplus(raw_max + blob_max)
        return Occupancy(occupied_cells(upper, config), -c.bound, cell_size)

    def total_variation(
        self, density_eps: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(density term, albedo term) of the grids' total variation
        (`backend.field.total_variation`): the albedo logits' squared variation, and the raw
        density's squared variation, or its Charbonnier variation with `density_eps`."""
        if density_eps is None:
            density = squared_variation(self.density_grid)
        else:
            density = charbonnier_variation(self.density_grid, density_eps)
        return density, squared_variation(self.albedo_grid)
