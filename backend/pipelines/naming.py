"""Names of result meshes, derived from prompts (what an artist sees in the outliner)."""

from __future__ import annotations

import re

MAX_NAME_CHARS = 48


def mesh_name(prompt: str, taken: set[str] | None = None) -> str:
    """ "a red cube, shiny" -> "red_cube_shiny"; unique against `taken` (suffix _2, _3 ...)."""
    words = [w for w in re.findall(r"[a-z0-9]+", prompt.lower()) if w not in {"a", "an", "the"}]
    base = "_".join(words)[:MAX_NAME_CHARS].strip("_") or "object"
    name, n = base, 2
    while taken is not None and name in taken:
        name, n = f"{base}_{n}", n + 1
    return name
