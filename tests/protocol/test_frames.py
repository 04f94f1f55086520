"""Multipart framing details beyond the per-message tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from protocol.frames import Envelope, check_job_id, decode, encode, header_summary, new_job_id
from protocol.limits import Limits
from protocol.version import PROTOCOL_VERSION


def test_blobs_become_frames_in_order_and_come_back_as_bytes() -> None:
    envelope = Envelope(
        type="x",
        job=None,
        fields={"a": b"first", "nested": [{"b": bytearray(b"second")}, memoryview(b"third")]},
    )
    frames = encode(envelope)
    assert frames[1:] == [b"first", b"second", b"third"]
    header = json.loads(frames[0])
    assert header["v"] == PROTOCOL_VERSION
    assert header["fields"]["nested"][1] == {"$frame": 3}
    decoded = decode(frames, Limits())
    assert decoded.fields == {"a": b"first", "nested": [{"b": b"second"}, b"third"]}


def test_header_is_plain_utf8_json() -> None:
    frames = encode(Envelope(type="hello", job=None, fields={"client": "Blender 4.2 — ü"}))
    assert json.loads(frames[0].decode("utf-8"))["fields"]["client"] == "Blender 4.2 — ü"


def test_header_summary_shows_frame_sizes() -> None:
    frames = encode(Envelope(type="preview", job=None, fields={"png": b"12345"}))
    assert header_summary(frames)["fields"]["png"] == {"$frame": 1, "bytes": 5}


def test_new_job_ids_are_valid_and_distinct() -> None:
    ids = {new_job_id() for _ in range(100)}
    assert len(ids) == 100
    for job in ids:
        assert check_job_id(job, "job") == job


def test_protocol_package_imports_neither_torch_nor_bpy_nor_backend() -> None:
    code = (
        "import sys, protocol.client, protocol.messages, protocol.curve\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'bpy', 'backend')]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)
