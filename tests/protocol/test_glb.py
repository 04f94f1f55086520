"""The light GLB check: accepts real GLB files, counts triangles, rejects broken ones."""

from __future__ import annotations

import json
import struct

import pytest

from protocol.errors import ProtocolError
from protocol.glb import inspect_glb
from tests.protocol.samples import make_glb


def test_counts_triangles() -> None:
    assert inspect_glb(make_glb(5), "glb").faces == 5
    assert inspect_glb(make_glb(5), "glb").meshes == 1


def _with_document(document: dict) -> bytes:
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def test_counts_indexed_and_strip_primitives() -> None:
    document = {
        "asset": {"version": "2.0"},
        "accessors": [{"count": 30}, {"count": 12}],
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]},
            {"primitives": [{"attributes": {"POSITION": 0}, "mode": 5}]},
            {"primitives": [{"attributes": {"POSITION": 0}, "mode": 1}]},
        ],
    }
    assert inspect_glb(_with_document(document), "glb").faces == 4 + 28


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (b"GIF89a" + b"\x00" * 30, "magic"),
        (struct.pack("<4sII", b"glTF", 1, 20) + b"\x00" * 8, "version 1"),
        (make_glb()[:-4], "header says"),
        (make_glb() + b"\x00\x00\x00\x00", "header says"),
        (_with_document({"asset": {"version": "1.0"}}), "asset.version"),
        (
            _with_document({"asset": {"version": "2.0"}, "meshes": [{"primitives": [{}]}]}),
            "POSITION",
        ),
        (
            _with_document(
                {
                    "asset": {"version": "2.0"},
                    "meshes": [{"primitives": [{"attributes": {"POSITION": 3}}]}],
                }
            ),
            "accessor",
        ),
        (_with_document({"asset": {"version": "2.0"}, "meshes": {}}), "not a list"),
    ],
    ids=[
        "empty",
        "magic",
        "version",
        "truncated",
        "trailing",
        "asset",
        "position",
        "accessor",
        "meshes",
    ],
)
def test_rejects_broken_files(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        inspect_glb(data, "meshes[0].glb")
    assert caught.value.code == "bad_mesh"
    assert caught.value.field == "meshes[0].glb"
    assert reason in caught.value.message


def test_rejects_json_chunk_past_the_end() -> None:
    data = bytearray(make_glb())
    struct.pack_into("<I", data, 12, 10_000)
    with pytest.raises(ProtocolError, match="past the end"):
        inspect_glb(bytes(data), "glb")
