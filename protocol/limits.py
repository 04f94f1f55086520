"""The limits a server enforces and advertises in its hello reply."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .errors import ErrorCode, ProtocolError
from .fields import FieldReader, as_float, as_int

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Size and range limits of requests and events; a client learns them from the hello."""

    max_prompt_chars: int = 300
    """Characters in a prompt, a negative prompt, a box prompt or a scene prompt."""

    max_boxes: int = 8
    """Prompt boxes in one compose request."""

    max_meshes: int = 8
    """Input meshes in one edit request."""

    max_result_meshes: int = 16
    """Meshes in one result (compose: one per box, plus an optional background)."""

    max_mesh_bytes: int = 64 * MIB
    """Bytes of one GLB, in a request or in a result."""

    max_faces: int = 200_000
    """Triangles in one input GLB of an edit request."""

    max_preview_bytes: int = 8 * MIB
    """Bytes of one preview PNG."""

    max_message_bytes: int = 256 * MIB
    """Bytes of one whole multipart message (header and binary frames); also the server's
    ZeroMQ MAXMSGSIZE, which libzmq applies to each frame."""

    max_header_bytes: int = 1 * MIB
    """Bytes of the JSON header frame."""

    max_seed: int = 2**32 - 1
    """Largest random seed (seeds are 0..max_seed)."""

    scene_bound: float = 10.0
    """Metres; every prompt box, rotated by its yaw, must lie inside [-bound, bound]^3."""

    min_box_size: float = 0.05
    """Metres; smallest edge of a prompt box."""

    max_box_size: float = 20.0
    """Metres; largest edge of a prompt box."""

    max_name_chars: int = 256
    """Characters in a name: mesh, model, method, preset, stage, client."""

    max_text_chars: int = 2000
    """Characters in a server message: error and warning texts."""

    max_list_jobs: int = 1000
    """Jobs one list-jobs request may ask for."""

    def to_wire(self) -> dict[str, Any]:
        """The limits as a JSON object, one key per field."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_wire(cls, value: object, path: str = "limits") -> Limits:
        """Read limits sent by a server; every field must be present and positive."""
        reader = FieldReader(value, path)
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw, field_path = reader.take(field.name)
            if field.type == "int":
                values[field.name] = as_int(raw, field_path, 1, 2**63 - 1)
            else:
                values[field.name] = as_float(raw, field_path, 0.0)
        reader.finish()
        limits = cls(**values)
        if limits.min_box_size > limits.max_box_size:
            raise ProtocolError(
                ErrorCode.OUT_OF_RANGE,
                f"{path}.min_box_size",
                f"{path}.min_box_size: {limits.min_box_size:g} is above max_box_size "
                f"{limits.max_box_size:g}",
            )
        return limits
