"""The names of the presets and methods a BoxDream backend offers (torch-free, for the CLI)."""

from __future__ import annotations

PRESETS: tuple[str, ...] = ("preview", "standard", "high")
"""Quality presets, fastest first."""
METHODS: tuple[str, ...] = ("sds", "vsd", "sjc", "clip")
"""Guidance methods: score distillation (sds, vsd, sjc) and CLIP guidance (clip, Dream
Fields)."""
ARCHITECTURES: tuple[str, ...] = ("sd-2.1",)
"""Published architectures `boxdream bench --architecture` builds with random weights
(`backend.guidance.architectures`)."""
