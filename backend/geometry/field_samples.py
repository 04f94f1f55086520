"""What a field gives a renderer at sample points (the contract between field/ and render/)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FieldSamples:
    """Field values at N points: density [N], albedo [N, 3], normal [N, 3]."""

    density: torch.Tensor
    albedo: torch.Tensor
    normal: torch.Tensor
