"""A light structural check of binary glTF (GLB) files, without any mesh library.

It checks the container (magic, version, lengths, chunks, JSON) and counts triangles from the
accessor counts; the pipelines parse the mesh itself.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from .errors import ErrorCode, ProtocolError

GLB_MAGIC = b"glTF"
JSON_CHUNK = 0x4E4F534A
_TRIANGLES, _TRIANGLE_STRIP, _TRIANGLE_FAN = 4, 5, 6


@dataclass(frozen=True)
class GlbSummary:
    """What the check learnt about a GLB file."""

    faces: int
    """Triangles over all primitives of all meshes (instancing by nodes not counted)."""

    meshes: int
    """Entries in the glTF `meshes` array."""


def _bad(path: str, reason: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESH, path, f"{path}: not a valid GLB file ({reason})")


def _accessor_count(document: dict[str, Any], index: object, path: str) -> int:
    accessors = document.get("accessors")
    if isinstance(index, bool) or not isinstance(index, int) or not isinstance(accessors, list):
        raise _bad(path, "a primitive refers to a missing accessor")
    if not 0 <= index < len(accessors) or not isinstance(accessors[index], dict):
        raise _bad(path, f"accessor {index} does not exist")
    count = accessors[index].get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise _bad(path, f"accessor {index} has no valid count")
    return count


def _primitive_faces(document: dict[str, Any], primitive: object, path: str) -> int:
    if not isinstance(primitive, dict):
        raise _bad(path, "a mesh primitive is not an object")
    mode = primitive.get("mode", _TRIANGLES)
    if "indices" in primitive:
        count = _accessor_count(document, primitive["indices"], path)
    else:
        attributes = primitive.get("attributes")
        if not isinstance(attributes, dict) or "POSITION" not in attributes:
            raise _bad(path, "a primitive has no POSITION attribute")
        count = _accessor_count(document, attributes["POSITION"], path)
    if mode == _TRIANGLES:
        return count // 3
    if mode in (_TRIANGLE_STRIP, _TRIANGLE_FAN):
        return max(count - 2, 0)
    return 0


def _read_document(data: bytes, path: str) -> dict[str, Any]:
    if len(data) < 20:
        raise _bad(path, f"{len(data)} bytes is too short")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != GLB_MAGIC:
        raise _bad(path, "wrong magic bytes")
    if version != 2:
        raise _bad(path, f"glTF container version {version}, expected 2")
    if length != len(data):
        raise _bad(path, f"header says {length} bytes, file has {len(data)}")
    chunk_length, chunk_type = struct.unpack_from("<II", data, 12)
    if chunk_type != JSON_CHUNK:
        raise _bad(path, "the first chunk is not JSON")
    if 20 + chunk_length > len(data):
        raise _bad(path, "the JSON chunk runs past the end of the file")
    offset = 20 + chunk_length
    while offset < len(data):
        if offset + 8 > len(data):
            raise _bad(path, "a truncated chunk header")
        next_length, _ = struct.unpack_from("<II", data, offset)
        offset += 8 + next_length
        if offset > len(data):
            raise _bad(path, "a chunk runs past the end of the file")
    try:
        document = json.loads(data[20 : 20 + chunk_length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(path, "the JSON chunk does not parse") from exc
    if not isinstance(document, dict):
        raise _bad(path, "the JSON chunk is not an object")
    asset = document.get("asset")
    if not isinstance(asset, dict) or not str(asset.get("version", "")).startswith("2"):
        raise _bad(path, "asset.version is not 2.x")
    return document


def inspect_glb(data: bytes, path: str) -> GlbSummary:
    """Check that `data` is a GLB 2.0 file and count its triangles.

    Raises `ProtocolError` with code "bad_mesh" naming `path` when it is not.
    """
    document = _read_document(data, path)
    meshes = document.get("meshes", [])
    if not isinstance(meshes, list):
        raise _bad(path, "meshes is not a list")
    faces = 0
    for mesh in meshes:
        primitives = mesh.get("primitives") if isinstance(mesh, dict) else None
        if not isinstance(primitives, list):
            raise _bad(path, "a mesh has no primitives list")
        faces += sum(_primitive_faces(document, primitive, path) for primitive in primitives)
    return GlbSummary(faces=faces, meshes=len(meshes))
