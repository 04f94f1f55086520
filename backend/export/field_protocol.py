"""What the export needs from a 3D field: density and albedo at points in a bounded cube."""

from __future__ import annotations

import itertools
from typing import Protocol, runtime_checkable

import torch


class DensityField(Protocol):
    """A density field living in the cube [-bound, bound]^3 (what marching cubes needs)."""

    bound: float
    """Half the side of the cube that holds the field."""

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """Volume density sigma >= 0: points [N, 3] -> [N]."""
        ...


@runtime_checkable
class ExportableField(Protocol):
    """A density + albedo field living in the cube [-bound, bound]^3 (local coordinates, metres,
    Z up). Both queries are called under `torch.no_grad()` with float32 points on the field's
    device."""

    bound: float
    """Half the side of the cube that holds the field."""

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """Volume density sigma >= 0: points [N, 3] -> [N]."""
        ...

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """Base colour in [0, 1]: points [N, 3] -> [N, 3]."""
        ...


def field_device(field: ExportableField) -> torch.device:
    """The device of the field's first parameter or buffer if it is a `torch.nn.Module`,
    else the CPU."""
    if isinstance(field, torch.nn.Module):
        tensor = next(itertools.chain(field.parameters(), field.buffers()), None)
        if tensor is not None:
            return tensor.device
    return torch.device("cpu")
