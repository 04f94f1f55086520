"""Random and mutated frames thrown at a live server never crash it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocol.client import Client
from protocol.frames import new_job_id
from protocol.limits import Limits
from protocol.messages import REPLY_TYPES, Error, Message, decode_message
from tests.backend.server.doubles import running_server
from tests.protocol.samples import sample_messages

REQUESTS: list[Message] = [
    m
    for m in sample_messages()
    if m.TYPE
    in {"hello", "generate", "compose", "edit", "cancel", "status", "fetch_result", "list_jobs"}
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_frames(draw: st.DrawFn) -> list[bytes]:
    """A valid request, then byte-level or structure-aware damage."""
    message = draw(st.sampled_from(REQUESTS))
    frames = list(message.to_wire())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["byte", "truncate", "insert", "frames", "json", "job"]))
        index = draw(st.integers(0, len(frames) - 1))
        frame = bytearray(frames[index])
        if kind == "byte" and frame:
            at = draw(st.integers(0, len(frame) - 1))
            frame[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            frame = frame[: draw(st.integers(0, len(frame)))]
        elif kind == "insert":
            at = draw(st.integers(0, len(frame)))
            frame[at:at] = draw(st.binary(max_size=16))
        elif kind == "frames":
            action = draw(st.sampled_from(["drop", "duplicate", "append", "swap"]))
            if action == "drop" and len(frames) > 1:
                frames.pop(index)
                continue
            if action == "duplicate":
                frames.insert(index, bytes(frame))
            elif action == "append":
                frames.append(draw(st.binary(max_size=64)))
            elif action == "swap" and len(frames) > 1:
                frames[0], frames[-1] = frames[-1], frames[0]
                continue
        elif kind in ("json", "job"):
            try:
                header: Any = json.loads(frames[0])
            except ValueError:
                continue
            if not isinstance(header, dict):
                continue
            if kind == "job":
                header["job"] = draw(st.sampled_from([None, new_job_id(), "../x", 5, "A" * 32]))
            elif isinstance(header.get("fields"), dict) and header["fields"]:
                key = draw(st.sampled_from(sorted(header["fields"])))
                header["fields"][key] = draw(JSON_VALUES)
            else:
                header[draw(st.sampled_from(["v", "type", "fields", "extra"]))] = draw(JSON_VALUES)
            frames[0] = json.dumps(header).encode()
            continue
        frames[index] = bytes(frame)
    return frames


def _fetch_with_extra_field(key: str) -> list[bytes]:
    """A fetch_result whose fields hold one unknown key, which the error reply names."""
    header = {"v": 1, "type": "fetch_result", "job": "0" * 32, "fields": {key: "\u00bf\u0082"}}
    return [json.dumps(header).encode()]


RANDOM_FRAMES = st.lists(st.binary(max_size=200), min_size=1, max_size=5)


def test_fuzzed_frames_never_crash_the_server(tmp_path: Path) -> None:
    with running_server(tmp_path / "jobs", devices=("cpu",)) as server:
        socket = zmq.Context.instance().socket(zmq.DEALER)
        socket.linger = 0
        socket.connect(server.address)

        @settings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(frames=st.one_of(RANDOM_FRAMES, mutated_frames()))
        @example(frames=_fetch_with_extra_field("\u008e\u00b5"))  # found by CI: issue 29
        @example(frames=_fetch_with_extra_field("\ud800"))  # a lone surrogate
        def throw(frames: list[bytes]) -> None:
            socket.send_multipart(frames)
            assert socket.poll(5000), "the server stopped answering"
            reply = decode_message(socket.recv_multipart(), Limits(), REPLY_TYPES)
            assert reply.TYPE in {cls.TYPE for cls in REPLY_TYPES}
            if isinstance(reply, Error):
                assert reply.message

        throw()
        socket.close()
        with Client(server.address) as client:
            assert client.hello().protocol_version == 1
