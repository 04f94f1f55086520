"""A box turned about the vertical axis: the region of one object in a composed scene.

Frames (Z up, as everywhere in BoxDream): a point x of the parent frame (world, or the scene's
normalised frame) has box-frame coordinates p = R_yaw^T (x - centre), where R_yaw turns
counter-clockwise about +Z seen from above (Blender's Z rotation). The box is
|p_k| <= half_size_k; dividing p by half_size gives unit coordinates, in which the box is
[-1, 1]^3 and ray/box tests become the unit-cube slab test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class OrientedBox:
    """A box with its own X, Y, Z edges, turned by `yaw_deg` about the parent's Z axis."""

    centre: tuple[float, float, float]
    """Centre in the parent frame."""
    half_size: tuple[float, float, float]
    """Half the edge lengths along the box's own X, Y, Z (all > 0)."""
    yaw_deg: float
    """Rotation about the parent's Z axis, degrees, counter-clockwise seen from above."""

    def rotation(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """[3, 3] R_yaw (box axes -> parent axes), on the device and dtype of `like` (default
        float64 on the CPU)."""
        c, s = math.cos(math.radians(self.yaw_deg)), math.sin(math.radians(self.yaw_deg))
        matrix = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        return matrix if like is None else matrix.to(like)

    def half_sizes(self, like: torch.Tensor) -> torch.Tensor:
        """[3] half edges on the device and dtype of `like`."""
        return torch.tensor(self.half_size, dtype=torch.float64).to(like)

    def to_box(self, points: torch.Tensor) -> torch.Tensor:
        """[..., 3] parent-frame points -> box-frame points p = R^T (x - centre)."""
        return (points - torch.tensor(self.centre, dtype=torch.float64).to(points)) @ self.rotation(
            points
        )

    def to_unit(self, points: torch.Tensor) -> torch.Tensor:
        """[..., 3] parent-frame points -> unit coordinates (the box is [-1, 1]^3)."""
        return self.to_box(points) / self.half_sizes(points)

    def directions_to_unit(self, directions: torch.Tensor) -> torch.Tensor:
        """[..., 3] parent-frame directions -> unit-coordinate directions R^T d / half_size
        (not unit length; ray parameters t stay those of the parent frame)."""
        return directions @ self.rotation(directions) / self.half_sizes(directions)

    def vectors_to_parent(self, vectors: torch.Tensor) -> torch.Tensor:
        """[..., 3] box-frame vectors -> parent-frame vectors R v."""
        return vectors @ self.rotation(vectors).T

    def contains(self, points: torch.Tensor) -> torch.Tensor:
        """[..., 3] parent-frame points -> [...] bool, True inside or on the box."""
        return (self.to_unit(points).abs() <= 1.0).all(dim=-1)

    def pose(self) -> torch.Tensor:
        """[4, 4] float64 box frame -> parent frame: translation(centre) @ R_yaw."""
        matrix = torch.eye(4, dtype=torch.float64)
        matrix[:3, :3] = self.rotation()
        matrix[:3, 3] = torch.tensor(self.centre, dtype=torch.float64)
        return matrix

    def extents(self) -> tuple[float, float, float]:
        """Half-extents of the parent-axis-aligned bounding box of the turned box."""
        c = abs(math.cos(math.radians(self.yaw_deg)))
        s = abs(math.sin(math.radians(self.yaw_deg)))
        hx, hy, hz = self.half_size
        return (c * hx + s * hy, s * hx + c * hy, hz)

    def in_frame(self, origin: tuple[float, float, float], scale: float) -> OrientedBox:
        """The same box in a frame whose coordinates are (x - origin) / scale."""
        return OrientedBox(
            centre=tuple((c - o) / scale for c, o in zip(self.centre, origin, strict=True)),
            half_size=tuple(h / scale for h in self.half_size),
            yaw_deg=self.yaw_deg,
        )
