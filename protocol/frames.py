"""Multipart framing: a JSON header frame followed by raw binary frames.

Frame 0 is UTF-8 JSON `{"v": version, "type": str, "job": job id or null, "fields": {...}}`;
frames 1..n are binary blobs (GLB, PNG), each referenced exactly once from the fields as
`{"$frame": i}`. No base64, no pickle. `decode` returns the fields with each reference replaced
by the frame's `bytes`, so a `bytes` value in decoded fields always came from a binary frame.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from .errors import ErrorCode, ProtocolError
from .fields import (
    FieldReader,
    HugeInt,
    NonFinite,
    as_int,
    as_text,
    join,
    wrong_type,
)
from .limits import Limits
from .version import PROTOCOL_VERSION

FRAME_KEY = "$frame"
"""The key of a binary frame reference in the fields."""

MAX_DEPTH = 32
"""Deepest nesting of objects and lists accepted in a header."""

MAX_VALUES = 10_000
"""JSON values in a header (an upper bound counted before parsing: its commas and opening
brackets outside strings), so that one message costs the server milliseconds, not seconds."""

MAX_INT_DIGITS = 40
"""Digits of a JSON integer; a longer one is read as `HugeInt` and rejected by `as_int`."""

MAX_TYPE_CHARS = 64
"""Characters in a message type name."""

_JOB_ID = re.compile(r"[0-9a-f]{32}")
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"')


@dataclass(frozen=True)
class Envelope:
    """One message between encoding and its typed form."""

    type: str
    """Message type, e.g. "generate" or "progress"."""

    job: str | None
    """Job id the message is about, or None."""

    fields: dict[str, Any]
    """Type-specific fields; binary frames appear as `bytes` values."""


def new_job_id() -> str:
    """A fresh job id: 32 lowercase hex digits."""
    return uuid.uuid4().hex


def check_job_id(value: object, path: str) -> str:
    """A job id: 32 lowercase hex digits (it also names the job's folder on the server)."""
    if not isinstance(value, str):
        raise wrong_type(path, "a job id string", value)
    if not _JOB_ID.fullmatch(value):
        raise ProtocolError(
            ErrorCode.BAD_VALUE,
            path,
            f"{path}: {value[:40]!r} is not a job id (32 lowercase hex digits)",
        )
    return value


class _DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def _outline(value: object, path: str, blobs: list[bytes], depth: int) -> object:
    """Copy `value` with every bytes-like value moved into `blobs` as a frame reference."""
    if depth > MAX_DEPTH:
        raise ProtocolError(ErrorCode.TOO_LARGE, path, f"{path}: nested deeper than {MAX_DEPTH}")
    if isinstance(value, bytes | bytearray | memoryview):
        blobs.append(bytes(value) if not isinstance(value, bytes) else value)
        return {FRAME_KEY: len(blobs)}
    if isinstance(value, dict):
        return {
            key: _outline(item, join(path, key), blobs, depth + 1) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_outline(item, join(path, i), blobs, depth + 1) for i, item in enumerate(value)]
    if isinstance(value, int) and abs(value) >= 10**MAX_INT_DIGITS:
        raise ProtocolError(
            ErrorCode.OUT_OF_RANGE, path, f"{path}: more than {MAX_INT_DIGITS} digits"
        )
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise wrong_type(path, "a JSON value or bytes", value)


def encode(envelope: Envelope, version: int = PROTOCOL_VERSION) -> list[bytes]:
    """Frames for `envelope`: the JSON header, then one frame per bytes value in the fields.

    Non-finite floats are written as JSON `NaN`/`Infinity` so that the receiver's validation
    names the offending field; a validating sender never sends them.
    """
    blobs: list[bytes] = []
    outlined = _outline(envelope.fields, "fields", blobs, 0)
    header = {"v": version, "type": envelope.type, "job": envelope.job, "fields": outlined}
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    return [text.encode("utf-8"), *blobs]


def _resolve(
    value: object, path: str, frames: Sequence[bytes], used: list[bool], depth: int
) -> object:
    if depth > MAX_DEPTH:
        raise ProtocolError(
            ErrorCode.BAD_FRAME, "fields", f"fields: nested deeper than {MAX_DEPTH}"
        )
    if isinstance(value, dict):
        if FRAME_KEY in value:
            index = value[FRAME_KEY]
            if len(value) != 1:
                raise ProtocolError(
                    ErrorCode.BAD_FRAME, path, f"{path}: a frame reference has only {FRAME_KEY}"
                )
            if isinstance(index, bool) or not isinstance(index, int):
                raise ProtocolError(
                    ErrorCode.BAD_FRAME, path, f"{path}: frame index must be an integer"
                )
            if not 1 <= index < len(frames):
                raise ProtocolError(
                    ErrorCode.BAD_FRAME,
                    path,
                    f"{path}: frame {index} does not exist "
                    f"(the message has {len(frames) - 1} binary frames)",
                )
            if used[index]:
                raise ProtocolError(
                    ErrorCode.BAD_FRAME, path, f"{path}: frame {index} is referenced twice"
                )
            used[index] = True
            return frames[index]
        return {
            key: _resolve(item, join(path, key), frames, used, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _resolve(item, join(path, i), frames, used, depth + 1) for i, item in enumerate(value)
        ]
    return value


def _count_values(text: str) -> int:
    """An upper bound on the values in JSON `text`: commas and opening brackets, plus one.

    Counted at C speed; strings are removed first only when they could matter.
    """

    def count(part: str) -> int:
        return part.count(",") + part.count("[") + part.count("{") + 1

    values = count(text)
    return values if values <= MAX_VALUES else count(_STRING.sub("", text))


def _parse_int(text: str) -> int | HugeInt:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INT_DIGITS else HugeInt(digits)


def _parse_header(frame: bytes, limits: Limits) -> object:
    if len(frame) > limits.max_header_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            "header",
            f"header: {len(frame)} bytes, limit is {limits.max_header_bytes}",
        )
    try:
        text = frame.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, "header", "header: not UTF-8 text") from exc
    values = _count_values(text)
    if values > MAX_VALUES:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, "header", f"header: {values} values, limit is {MAX_VALUES}"
        )
    try:
        return json.loads(
            text,
            parse_constant=NonFinite,
            parse_int=_parse_int,
            object_pairs_hook=_unique_keys,
        )
    except (ValueError, RecursionError) as exc:
        reason = str(exc)[:120] if isinstance(exc, ValueError) else "nested too deeply"
        raise ProtocolError(
            ErrorCode.BAD_FRAME, "header", f"header: not valid JSON ({reason})"
        ) from exc


def decode(frames: Sequence[bytes], limits: Limits) -> Envelope:
    """Check the framing and header of a received message; raise `ProtocolError` if bad."""
    if not frames:
        raise ProtocolError(ErrorCode.BAD_FRAME, "message", "message: no frames")
    total = sum(len(frame) for frame in frames)
    if total > limits.max_message_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            "message",
            f"message: {total} bytes, limit is {limits.max_message_bytes}",
        )
    header = _parse_header(frames[0], limits)
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "header", "header: expected a JSON object")
    reader = FieldReader(header)
    version, _ = reader.take("v")
    as_int(version, "v", 0, 2**31)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.BAD_VERSION,
            "v",
            f"v: protocol version {version}, this side speaks version {PROTOCOL_VERSION}",
        )
    message_type = as_text(*reader.take("type"), MAX_TYPE_CHARS, multiline=False)
    raw_job, job_path = reader.take("job")
    job = None if raw_job is None else check_job_id(raw_job, job_path)
    raw_fields, fields_path = reader.take("fields")
    reader.finish()
    if not isinstance(raw_fields, dict):
        raise wrong_type(fields_path, "an object", raw_fields)
    used = [False] * len(frames)
    used[0] = True
    resolved = _resolve(raw_fields, "fields", frames, used, 0)
    for index, was_used in enumerate(used):
        if not was_used:
            raise ProtocolError(
                ErrorCode.BAD_FRAME, "message", f"message: binary frame {index} is not referenced"
            )
    return Envelope(message_type, job, cast(dict[str, Any], resolved))


def header_summary(frames: Sequence[bytes]) -> dict[str, Any]:
    """The header of an encoded message with each frame reference annotated with its size.

    For logs and `--json` output; `frames` must come from `encode`.
    """
    header = json.loads(frames[0].decode("utf-8"))

    def annotate(value: object) -> object:
        if isinstance(value, dict):
            if FRAME_KEY in value:
                return {FRAME_KEY: value[FRAME_KEY], "bytes": len(frames[value[FRAME_KEY]])}
            return {key: annotate(item) for key, item in value.items()}
        if isinstance(value, list):
            return [annotate(item) for item in value]
        return value

    return cast(dict[str, Any], annotate(header))
