"""Backgrounds behind the object: a random solid grey per view.

A random solid background (as Magic3D and many small-scale setups use) cannot be confused with
the object, so score distillation must put the asked colour into the field itself. The built-in
model's data set is composited over the same distribution.
"""

from __future__ import annotations

import torch


def sample_backgrounds(batch: int, generator: torch.Generator) -> torch.Tensor:
    """[B, 3] solid background colours, a uniform grey level per view."""
    return torch.rand(batch, 1, generator=generator).expand(batch, 3).clone()
