"""The small world the built-in model `tiny-shapes` knows: its shapes, colours and captions.

Pure Python (no torch) so the CLI, the server's hello and prompt warnings can use it cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "yellow": (0.95, 0.85, 0.15),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.12, 0.28, 0.90),
    "purple": (0.55, 0.18, 0.80),
    "pink": (0.97, 0.52, 0.72),
    "white": (0.92, 0.92, 0.92),
}
"""Colour word -> linear RGB albedo used by the data set."""

SHAPES: tuple[str, ...] = (
    "cube",
    "sphere",
    "cylinder",
    "cone",
    "torus",
    "snowman",
    "mushroom",
    "table",
    "chair",
)
"""Shape words, one per object in `shapes.py`."""

SYNONYMS: dict[str, str] = {"box": "cube", "ball": "sphere", "donut": "torus"}
"""Extra words the captions use for some shapes."""

ASYMMETRIC_SHAPES: frozenset[str] = frozenset({"chair", "table", "mushroom"})
"""Shapes whose captions always carry the view suffix (their views differ)."""

VIEW_WORDS: tuple[str, ...] = ("front", "side", "back", "overhead")
"""The view-dependent suffix words (", front view" ...)."""

FILLER_WORDS: tuple[str, ...] = ("a", "an", "the", "of", "view", ",")
"""Words that carry no content but appear in captions."""


@dataclass(frozen=True)
class PromptReport:
    """What the built-in model understood of a prompt."""

    colour: str | None
    shape: str | None
    unknown_words: tuple[str, ...]


def words_of(prompt: str) -> list[str]:
    """Lower-case words and commas, the way the built-in tokenizer splits text."""
    return re.findall(r"[a-z]+|,", prompt.lower())


def all_words() -> list[str]:
    """Every word of the world, in a stable order (the tokenizer's vocabulary)."""
    words = [*FILLER_WORDS, *COLOURS, *SHAPES, *SYNONYMS, *VIEW_WORDS]
    return list(dict.fromkeys(words))


def read_prompt(prompt: str) -> PromptReport:
    """Find the colour and shape a prompt asks for, and the words outside the vocabulary."""
    known = set(all_words())
    colour = shape = None
    unknown = []
    for word in words_of(prompt):
        if word in COLOURS:
            colour = colour or word
        elif word in SHAPES or word in SYNONYMS:
            shape = shape or SYNONYMS.get(word, word)
        elif word not in known:
            unknown.append(word)
    return PromptReport(colour=colour, shape=shape, unknown_words=tuple(unknown))


def vocabulary_warning(prompt: str) -> str | None:
    """A one-line warning when a prompt uses words the built-in model never saw, else None."""
    report = read_prompt(prompt)
    if not report.unknown_words and report.shape and report.colour:
        return None
    parts = []
    if report.unknown_words:
        parts.append(f"unknown words {', '.join(repr(w) for w in report.unknown_words)}")
    if report.shape is None:
        parts.append("no known shape")
    if report.colour is None:
        parts.append("no known colour")
    return (
        f"tiny-shapes does not understand this prompt fully ({'; '.join(parts)}). "
        f"It knows the shapes {', '.join(SHAPES)} and the colours {', '.join(COLOURS)}; "
        "point --model at a Stable Diffusion checkpoint for open prompts."
    )
