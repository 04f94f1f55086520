"""One mesh's edit: what the texture and shape edits (`texture_edit.py`, `shape_edit.py`) are
given, as one typed object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from backend.guidance.distillation import DistillationMethod
from backend.guidance.prior import DiffusionPrior
from backend.pipelines.edit_region import RegionBox
from backend.pipelines.edit_source import EditSource
from backend.pipelines.presets import DistillConfig
from backend.pipelines.prompt_guidance import PromptEmbeddings


@dataclass
class MeshEdit:
    """Everything one mesh's edit works with."""

    source: EditSource
    """The artist's mesh, read from the request."""
    region: RegionBox | None
    """The world box the edit is confined to, or None for the whole mesh."""
    prior: DiffusionPrior
    """The frozen 2D prior."""
    method: DistillationMethod
    """SDS, VSD or SJC, closed by the caller after this mesh."""
    embeddings: PromptEmbeddings
    """The edit prompt's (and negative prompt's) text embeddings."""
    config: DistillConfig
    """The run's numbers (`presets.edit_config` of the preset)."""
    generator: torch.Generator
    """Every random draw of this mesh's edit."""
    should_cancel: Callable[[], bool]
    """Checked before each step."""
    seed: int = 0
    """The request's seed (the shape edit's field jitter)."""
