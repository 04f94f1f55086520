"""Typed reading of decoded JSON fields; every failure names the field path and the limit."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import ErrorCode, ProtocolError

T = TypeVar("T")

_WHITESPACE_CONTROLS = frozenset("\t\n\r")
_UNSENDABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters (Unicode category Cc) and lone surrogates (not encodable as UTF-8)."""
_UNSENDABLE_LINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
"""The same, less tab, newline and carriage return."""


@dataclass(frozen=True)
class NonFinite:
    """A JSON `NaN`, `Infinity` or `-Infinity` token, kept so the field reader can name it."""

    text: str


@dataclass(frozen=True)
class HugeInt:
    """A JSON integer too long to convert (`protocol.frames.MAX_INT_DIGITS`), kept so that the
    field reader can name it and its range."""

    digits: int


def join(path: str, name: str | int) -> str:
    """The path of a child field: `join("boxes", 0)` is "boxes[0]", `join("a", "b")` "a.b"."""
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def describe(value: object) -> str:
    """A short phrase for a received value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, NonFinite):
        return value.text
    if isinstance(value, HugeInt):
        return f"a {value.digits}-digit integer"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes | bytearray | memoryview):
        return "a binary frame"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def wrong_type(path: str, expected: str, value: object) -> ProtocolError:
    """The error for a value of the wrong JSON type."""
    return ProtocolError(
        ErrorCode.WRONG_TYPE, path, f"{path}: expected {expected}, got {describe(value)}"
    )


def as_text(
    value: object, path: str, max_chars: int, *, min_chars: int = 1, multiline: bool = True
) -> str:
    """A string of `min_chars..max_chars` characters without control characters.

    `multiline` allows tab, newline and carriage return (free text such as prompts); names
    allow no control character at all.
    """
    if not isinstance(value, str):
        raise wrong_type(path, "a string", value)
    if len(value) > max_chars:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, path, f"{path}: {len(value)} characters, limit is {max_chars}"
        )
    if len(value.strip()) < min_chars:
        raise ProtocolError(
            ErrorCode.OUT_OF_RANGE,
            path,
            f"{path}: empty, needs {min_chars} to {max_chars} characters",
        )
    for char in value:
        if unicodedata.category(char) == "Cc" and not (multiline and char in _WHITESPACE_CONTROLS):
            raise ProtocolError(
                ErrorCode.BAD_VALUE, path, f"{path}: contains control character U+{ord(char):04X}"
            )
    return value


def printable(text: str, *, multiline: bool = True) -> str:
    """`text` with every character `as_text` rejects written as a `\\uXXXX` escape, so that
    a message echoing received input (a field name) passes the receiver's validation."""
    pattern = _UNSENDABLE_LINE if multiline else _UNSENDABLE
    return pattern.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def as_choice(value: object, path: str, choices: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if not isinstance(value, str):
        raise wrong_type(path, "a string", value)
    if value not in choices:
        raise ProtocolError(
            ErrorCode.BAD_VALUE,
            path,
            f"{path}: {value[:40]!r} is not one of {', '.join(choices)}",
        )
    return value


def as_int(value: object, path: str, lo: int, hi: int) -> int:
    """An integer in `lo..hi` (JSON booleans and numbers with a fraction are rejected)."""
    if isinstance(value, HugeInt):
        raise ProtocolError(
            ErrorCode.OUT_OF_RANGE, path, f"{path}: {describe(value)} is outside {lo}..{hi}"
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(path, "an integer", value)
    if not lo <= value <= hi:
        shown = value if abs(value) < 10**30 else "a huge number"
        raise ProtocolError(ErrorCode.OUT_OF_RANGE, path, f"{path}: {shown} is outside {lo}..{hi}")
    return value


def as_float(value: object, path: str, lo: float | None = None, hi: float | None = None) -> float:
    """A finite number, optionally within `[lo, hi]`; JSON integers are accepted."""
    if isinstance(value, NonFinite):
        raise ProtocolError(
            ErrorCode.NOT_FINITE, path, f"{path}: {value.text} is not a finite number"
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(path, "a number", value)
    number = float(value)
    if not math.isfinite(number):
        raise ProtocolError(ErrorCode.NOT_FINITE, path, f"{path}: {number} is not a finite number")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise ProtocolError(
            ErrorCode.OUT_OF_RANGE,
            path,
            f"{path}: {number:g} is outside [{'-inf' if lo is None else f'{lo:g}'}, "
            f"{'inf' if hi is None else f'{hi:g}'}]",
        )
    return number


def as_bool(value: object, path: str) -> bool:
    """A JSON boolean (0 and 1 are not booleans)."""
    if not isinstance(value, bool):
        raise wrong_type(path, "true or false", value)
    return value


def as_blob(value: object, path: str, max_bytes: int) -> bytes:
    """A binary frame of at most `max_bytes` bytes."""
    if not isinstance(value, bytes):
        raise wrong_type(path, "a binary frame reference", value)
    if len(value) > max_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, path, f"{path}: {len(value)} bytes, limit is {max_bytes}"
        )
    return value


def as_list(value: object, path: str, min_items: int, max_items: int) -> list[Any]:
    """A JSON list of `min_items..max_items` items."""
    if not isinstance(value, list):
        raise wrong_type(path, "a list", value)
    if len(value) > max_items:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, path, f"{path}: {len(value)} items, limit is {max_items}"
        )
    if len(value) < min_items:
        raise ProtocolError(
            ErrorCode.OUT_OF_RANGE,
            path,
            f"{path}: {len(value)} items, needs at least {min_items}",
        )
    return value


def as_vector(value: object, path: str, length: int) -> tuple[float, ...]:
    """A list of exactly `length` finite numbers."""
    if not isinstance(value, list) or len(value) != length:
        raise wrong_type(path, f"a list of {length} numbers", value)
    return tuple(as_float(item, join(path, i)) for i, item in enumerate(value))


def optional(check: Callable[..., T], value: object, path: str, *args: Any) -> T | None:
    """`None` for JSON null, else `check(value, path, *args)`."""
    return None if value is None else check(value, path, *args)


def list_of(
    check: Callable[..., T], value: object, path: str, min_items: int, max_items: int, *args: Any
) -> list[T]:
    """A JSON list of `min_items..max_items` items, each read by `check(item, item_path, *args)`."""
    items = as_list(value, path, min_items, max_items)
    return [check(item, join(path, index), *args) for index, item in enumerate(items)]


class FieldReader:
    """The fields of one JSON object: `take` each expected field, then `finish`.

    `take` raises `missing_field` for an absent field; `finish` raises `extra_field` for any
    field nobody took.
    """

    def __init__(self, value: object, path: str = "") -> None:
        if not isinstance(value, dict):
            raise wrong_type(path or "fields", "an object", value)
        self._data: dict[str, Any] = value
        self._path = path
        self._taken: set[str] = set()

    def take(self, name: str) -> tuple[Any, str]:
        """The raw value of field `name` and its path."""
        path = join(self._path, name)
        if name not in self._data:
            raise ProtocolError(ErrorCode.MISSING_FIELD, path, f"{path}: missing")
        self._taken.add(name)
        return self._data[name], path

    def get(self, name: str, default: object) -> tuple[Any, str]:
        """Like `take`, but an absent field gives `default` (for optional input files)."""
        if name not in self._data:
            return default, join(self._path, name)
        return self.take(name)

    def finish(self) -> None:
        """Reject fields that were not taken."""
        for name in self._data:
            if name not in self._taken:
                path = join(self._path, str(name)[:60])
                raise ProtocolError(ErrorCode.EXTRA_FIELD, path, f"{path}: unknown field")
