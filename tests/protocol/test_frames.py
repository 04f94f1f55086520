"""Multipart framing details beyond the per-message tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.errors import ProtocolError
from protocol.frames import (
    MAX_VALUES,
    Envelope,
    check_job_id,
    decode,
    encode,
    header_summary,
    new_job_id,
)
from protocol.limits import Limits
from protocol.messages import GenerateRequest, JobList, JobSummary
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


def _header(fields: object) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "type": "x", "job": None, "fields": fields}).encode()


def test_values_are_counted_before_parsing() -> None:
    """0.93 MB of nested lists took 0.6-3 s to parse and resolve; now it is refused unparsed."""
    hostile = _header({"p": [json.loads("[" * 30 + "]" * 30)] * 15000})
    with pytest.raises(ProtocolError) as caught:
        decode([hostile], Limits())
    assert (caught.value.code, caught.value.field) == ("too_large", "header")
    assert caught.value.message == f"header: 465006 values, limit is {MAX_VALUES}"
    in_strings = _header({"p": "[a], {b}, " * MAX_VALUES})
    assert decode([in_strings], Limits()).fields["p"].startswith("[a], {b}")


def test_a_huge_integer_names_its_field_and_range() -> None:
    header = (
        GenerateRequest(prompt="cube").to_wire()[0].replace(b'"seed":0', b'"seed":' + b"7" * 5000)
    )
    with pytest.raises(ProtocolError) as caught:
        GenerateRequest.from_wire([header])
    assert caught.value.message == "seed: a 5000-digit integer is outside 0..4294967295"
    with pytest.raises(ProtocolError, match=r"^fields.seed: more than 40 digits$"):
        GenerateRequest(prompt="cube", seed=10**5000).to_wire()


def test_the_largest_job_list_fits_the_value_limit() -> None:
    summary = JobSummary(new_job_id(), "generate", "done", "a, b, [c], {d}" * 20, 1.0, 2.0)
    reply = JobList(jobs=[summary] * Limits().max_list_jobs)
    assert JobList.from_wire(reply.to_wire()) == reply
