"""The field table of the protocol: each message field is declared once, as a dataclass field
with a `Wire` spec, and that one declaration reads it (with the exact error paths), writes it,
and describes it in PROTOCOL.md (`python -m protocol.document`).

    prompt: str = wire(text("max_prompt_chars"), "string", "1..max_prompt_chars")

A reader is `(value, path, limits) -> value`; it raises `ProtocolError` naming `path` and the
limit. Rules between fields (a step within its total, a box inside the scene) are a record's
`check`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from .errors import ErrorCode, ProtocolError
from .fields import (
    FieldReader,
    as_blob,
    as_bool,
    as_choice,
    as_float,
    as_int,
    as_text,
    as_vector,
    join,
    list_of,
    wrong_type,
)
from .limits import Limits

Reader = Callable[[object, str, Limits], Any]
"""(raw JSON value, its path, the receiver's limits) -> the field's value."""


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Wire:
    """How one dataclass field travels."""

    read: Reader
    """Checks and converts the received value."""
    kind: str
    """Its JSON type, for PROTOCOL.md ("string", "integer", "list of box"...)."""
    doc: str
    """Its rule or meaning, for PROTOCOL.md."""
    write: Callable[[Any], Any] = _same
    """Converts the value to JSON (tuples to lists, records to objects)."""
    may_be_absent: bool = False
    """An absent field takes the dataclass default (fields added after version 1)."""
    item: type[Record] | None = None
    """The record type of a list of records (its fields get rows of their own)."""


def wire(
    read: Reader,
    kind: str,
    doc: str,
    *,
    write: Callable[[Any], Any] = _same,
    may_be_absent: bool = False,
    item: type[Record] | None = None,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that travels on the wire (see the module docstring)."""
    spec = Wire(read, kind, doc, write, may_be_absent, item)
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"wire": spec}
    )


def wire_fields(cls: type) -> list[tuple[dataclasses.Field, Wire]]:
    """The wire fields of a dataclass: its own positional ones first, then the keyword-only
    ones a base shares (a job request's prompt before its sampling fields), each in
    declaration order."""
    declared = [f for f in dataclasses.fields(cls) if "wire" in f.metadata]
    return [(f, f.metadata["wire"]) for f in sorted(declared, key=lambda f: f.kw_only is True)]


def write_fields(record: object) -> dict[str, Any]:
    """A record's wire fields as JSON values."""
    return {f.name: spec.write(getattr(record, f.name)) for f, spec in wire_fields(type(record))}


def read_fields(
    cls: type, reader: FieldReader, limits: Limits, keys: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Read every wire field of `cls` from `reader` (absent ones that may be take their
    default); `keys` renames fields whose JSON key differs in this document (a file)."""
    values = {}
    for f, spec in wire_fields(cls):
        key = (keys or {}).get(f.name, f.name)
        if spec.may_be_absent:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            value, path = reader.get(key, default)
        else:
            value, path = reader.take(key)
        values[f.name] = spec.read(value, path, limits)
    return values


class Record:
    """A JSON object inside a message (a prompt box, a mesh, a job summary)."""

    def to_fields(self) -> dict[str, Any]:
        """The record as JSON fields."""
        return write_fields(self)

    @classmethod
    def from_fields(
        cls, value: object, path: str, limits: Limits, keys: Mapping[str, str] | None = None
    ) -> Self:
        """Read and check one record at `path` (`keys`: see `read_fields`)."""
        reader = FieldReader(value, path)
        record = cls(**read_fields(cls, reader, limits, keys))
        reader.finish()
        record.check(path, limits)
        return record

    def check(self, path: str, limits: Limits) -> None:
        """Rules between fields (none by default); raise `ProtocolError`."""


# ---- readers ----------------------------------------------------------------------------------


def _limit(limits: Limits, bound: int | str) -> Any:
    return getattr(limits, bound) if isinstance(bound, str) else bound


def text(limit: str, min_chars: int = 1, multiline: bool = True) -> Reader:
    """A string of `min_chars..limits.<limit>` characters."""

    def read(value: object, path: str, limits: Limits) -> str:
        return as_text(
            value, path, getattr(limits, limit), min_chars=min_chars, multiline=multiline
        )

    return read


label = text("max_name_chars", multiline=False)
"""A one-line name of 1..max_name_chars characters."""


def integer(lo: int, hi: int | str) -> Reader:
    """An integer in lo..hi (`hi` may name a limit)."""
    return lambda value, path, limits: as_int(value, path, lo, _limit(limits, hi))


def number(lo: float | None = None, hi: float | None = None) -> Reader:
    """A finite number, optionally within [lo, hi]."""
    return lambda value, path, limits: as_float(value, path, lo, hi)


def boolean(value: object, path: str, limits: Limits) -> bool:
    """true or false."""
    return as_bool(value, path)


def choice(options: tuple[str, ...]) -> Reader:
    """One of a fixed set of strings."""
    return lambda value, path, limits: as_choice(value, path, options)


def vector(length: int) -> Reader:
    """A list of exactly `length` finite numbers, as a tuple."""
    return lambda value, path, limits: as_vector(value, path, length)


def blob(limit: str) -> Reader:
    """A binary frame of at most limits.<limit> bytes."""
    return lambda value, path, limits: as_blob(value, path, getattr(limits, limit))


def nullable(read: Reader) -> Reader:
    """null, or what `read` reads."""
    return lambda value, path, limits: None if value is None else read(value, path, limits)


def records(cls: type[Record], min_items: int, max_items: int | str) -> Reader:
    """A list of min..max records of `cls`."""

    def read(value: object, path: str, limits: Limits) -> list:
        high = _limit(limits, max_items)
        return list_of(cls.from_fields, value, path, min_items, high, limits)

    return read


def unique(items: list[str], path: str, item: str = "") -> None:
    """Raise bad_value at the first name used twice (`item`: the name's field in a record)."""
    seen: set[str] = set()
    for index, name in enumerate(items):
        if name in seen:
            where = join(join(path, index), item) if item else join(path, index)
            raise ProtocolError(ErrorCode.BAD_VALUE, where, f"{where}: {name!r} is used twice")
        seen.add(name)


def names(min_items: int, max_items: int) -> Reader:
    """A list of min..max unique one-line names."""

    def read(value: object, path: str, limits: Limits) -> list[str]:
        result = list_of(label, value, path, min_items, max_items, limits)
        unique(result, path)
        return result

    return read


def json_object(value: object, path: str, limits: Limits) -> dict[str, Any] | None:
    """A free-form JSON object, or null."""
    if value is not None and not isinstance(value, dict):
        raise wrong_type(path, "an object or null", value)
    return value


# ---- writers ----------------------------------------------------------------------------------


def as_list(value: Any) -> Any:
    """A tuple as a JSON list (None stays null)."""
    return None if value is None else list(value)


def as_objects(items: list[Record]) -> list[dict[str, Any]]:
    """Records as JSON objects."""
    return [item.to_fields() for item in items]
