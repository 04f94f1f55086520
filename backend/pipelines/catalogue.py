"""The names of the presets and methods a BoxDream backend offers (torch-free, for the CLI)."""

from __future__ import annotations

PRESETS: tuple[str, ...] = ("preview", "standard", "high")
"""Quality presets, fastest first."""
METHODS: tuple[str, ...] = ("sds", "vsd", "sjc")
"""Score-distillation methods."""
