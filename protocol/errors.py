"""Error codes and the exceptions the protocol raises."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable machine-readable error codes carried by `Error` events (see PROTOCOL.md)."""

    BAD_VERSION = "bad_version"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    EXTRA_FIELD = "extra_field"
    WRONG_TYPE = "wrong_type"
    BAD_VALUE = "bad_value"
    OUT_OF_RANGE = "out_of_range"
    NOT_FINITE = "not_finite"
    TOO_LARGE = "too_large"
    UNKNOWN_JOB = "unknown_job"
    UNKNOWN_METHOD = "unknown_method"
    UNKNOWN_PRESET = "unknown_preset"
    UNKNOWN_MODEL = "unknown_model"
    BAD_MESH = "bad_mesh"
    QUEUE_FULL = "queue_full"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A message or a job was rejected.

    `code` is an `ErrorCode` value, `field` the dotted path of the offending field ("" when the
    whole message is at fault) and `message` one human sentence that starts with that field and
    names the limit, e.g. "prompt: 412 characters, limit is 300".
    """

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[ProtocolError], tuple[str, str, str]]:
        return (type(self), (self.code, self.field, self.message))


class FieldError(ValueError):
    """A bad value found outside message decoding (a preset or device name, a model folder, a
    precision): `field` names it and the message starts with it. A server turns it into a
    `ProtocolError` with code `bad_value`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[type[FieldError], tuple[str, str]]:
        return (type(self), (self.field, str(self)))


class ServerUnreachable(ConnectionError):
    """The server did not answer within the client's timeout, after its retries."""

    def __init__(self, address: str, message: str) -> None:
        super().__init__(message)
        self.address = address
        self.message = message
