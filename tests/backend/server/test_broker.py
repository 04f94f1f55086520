"""The server over real ZeroMQ sockets on loopback, with the scripted pipeline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq

import protocol.client
from backend.server.service import Server
from protocol.client import Client
from protocol.errors import ProtocolError
from protocol.frames import new_job_id
from protocol.limits import Limits
from protocol.messages import (
    REPLY_TYPES,
    Accepted,
    ComposeRequest,
    EditRequest,
    Error,
    Event,
    GenerateRequest,
    Hello,
    MeshInput,
    Preview,
    Progress,
    PromptBox,
    Result,
    ServerInfo,
    decode_message,
)
from tests.backend.server import doubles
from tests.backend.server.doubles import running_server
from tests.protocol.samples import IDENTITY, make_glb

Connect = Callable[..., Client]


def raw_socket(address: str) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(address)
    return socket


def receive(socket: zmq.Socket, timeout_ms: int = 3000) -> object:
    assert socket.poll(timeout_ms), "no reply from the server"
    return decode_message(socket.recv_multipart(), Limits(), REPLY_TYPES)


def test_hello_advertises_the_server(connect: Connect) -> None:
    info = connect().hello()
    assert info.protocol_version == 1
    assert info.device == "cpu,cpu"
    assert info.methods == ["sds", "vsd", "sjc"]
    assert info.presets["vsd"] == ["preview", "standard", "high"]
    assert info.limits == Limits()
    assert info.default_model == "tiny-shapes"


def test_submit_streams_accepted_progress_in_order_then_result(
    connect: Connect, jobs_dir: Path
) -> None:
    client = connect()
    job = client.submit(GenerateRequest(prompt="a red cube steps=5"))
    seen: list[Event] = []
    result = client.wait(job, on_event=seen.append, timeout_s=20)
    assert isinstance(seen[0], Accepted) and seen[0].job == job
    assert seen[-1] is result
    steps = [event.step for event in seen if isinstance(event, Progress)]
    assert steps == [1, 2, 3, 4, 5]
    assert any(isinstance(event, Preview) for event in seen)
    assert all(event.job == job for event in seen)
    assert [mesh.name for mesh in result.meshes] == ["object"]
    assert result.meshes[0].glb == make_glb()
    folder = jobs_dir / job
    assert json.loads((folder / "status.json").read_text())["state"] == "done"
    assert (folder / "request.json").is_file()
    assert (folder / "result.1.glb").read_bytes() == make_glb()
    assert (folder / "preview.png").is_file()
    logged = [
        json.loads(line)["type"] for line in (folder / "events.jsonl").read_text().splitlines()
    ]
    assert logged.count("progress") == 5 and "result" in logged
    assert client.status(job).state == "done"


def test_compose_and_edit_results_carry_their_meshes(connect: Connect) -> None:
    client = connect()
    box = PromptBox(centre=(0.0, 0.0, 0.5), size=(1.0, 1.0, 1.0), yaw_deg=10.0, prompt="a cube")
    compose = client.submit(ComposeRequest(boxes=[box, box], scene_prompt="a room steps=1"))
    transform = (*IDENTITY[:3], 2.0, *IDENTITY[4:])
    edit = client.submit(
        EditRequest(
            meshes=[MeshInput(name="Suzanne", glb=make_glb(4), transform=transform)],
            prompt="gold steps=1",
        )
    )
    assert [m.name for m in client.wait(compose, timeout_s=20).meshes] == ["box0", "box1"]
    edited = client.wait(edit, timeout_s=20).meshes[0]
    assert (edited.name, edited.glb, edited.transform) == ("Suzanne", make_glb(4), transform)


def test_poll_never_blocks(connect: Connect) -> None:
    client = connect()
    client.submit(GenerateRequest(prompt="slow steps=50 step_ms=50"))
    started = time.monotonic()
    for _ in range(20):
        client.poll()
    assert time.monotonic() - started < 2.0, "20 polls, each far below a heartbeat"


def test_poll_returns_each_event_once(connect: Connect) -> None:
    client = connect()
    job = client.submit(GenerateRequest(prompt="steps=4"))
    events: list[Event] = []
    deadline = time.monotonic() + 20
    while not any(isinstance(e, Result) for e in events) and time.monotonic() < deadline:
        events.extend(client.poll(timeout_ms=100))
    assert [type(e).__name__ for e in events if not isinstance(e, Preview)] == [
        "Accepted",
        "Progress",
        "Progress",
        "Progress",
        "Progress",
        "Result",
    ]
    assert client.active_jobs == frozenset()
    assert client.poll() == []
    assert client.wait(job, timeout_s=10).job == job


def test_cancel_takes_effect_within_a_step(connect: Connect) -> None:
    client = connect()
    job = client.submit(GenerateRequest(prompt="long steps=500 step_ms=100"))
    step = 0
    while step < 3:
        step = max([step] + [e.step for e in client.poll(100) if isinstance(e, Progress)])
    assert client.cancel(job).state in ("running", "cancelled")
    later: list[Event] = []
    with pytest.raises(ProtocolError) as caught:
        client.wait(job, on_event=later.append, timeout_s=10)
    assert caught.value.code == "cancelled"
    assert type(later[-1]).__name__ == "Cancelled"
    steps_after_cancel = [e.step for e in later if isinstance(e, Progress)]
    assert len(steps_after_cancel) <= 3, "events in flight plus at most one more step"
    assert client.status(job).state == "cancelled"
    with pytest.raises(ProtocolError, match="cancelled"):
        connect().fetch_result(job)


def test_cancel_a_queued_job(jobs_dir: Path) -> None:
    with running_server(jobs_dir, devices=("cpu",)) as server, Client(server.address) as client:
        running = client.submit(GenerateRequest(prompt="first steps=100 step_ms=20"))
        deadline = time.monotonic() + 10
        while client.status(running).state != "running":
            assert time.monotonic() < deadline, "the only worker never took the first job"
            time.sleep(0.02)
        queued = client.submit(GenerateRequest(prompt="second in line"))
        status = client.status(queued)
        assert (status.state, status.queue_position) == ("queued", 0)
        assert client.cancel(queued).state == "cancelled"
        with pytest.raises(ProtocolError, match="cancelled"):
            client.wait(queued, timeout_s=5)
        client.cancel(running)
        with pytest.raises(ProtocolError, match="cancelled"):
            client.wait(running, timeout_s=5)
        assert "second in line" not in doubles.STARTED


def test_two_clients_with_interleaved_jobs(connect: Connect) -> None:
    alice, bob = connect(), connect()
    jobs = {
        alice: [alice.submit(GenerateRequest(prompt="alice one steps=4"))],
        bob: [bob.submit(GenerateRequest(prompt="bob one steps=3"))],
    }
    jobs[alice].append(alice.submit(GenerateRequest(prompt="alice two steps=2")))
    jobs[bob].append(bob.submit(GenerateRequest(prompt="bob two steps=5")))
    received: dict[Client, list[Event]] = {alice: [], bob: []}
    for client in (bob, alice):
        for job in reversed(jobs[client]):
            client.wait(job, on_event=received[client].append, timeout_s=20)
        received[client].extend(client.poll())
    for client, own in jobs.items():
        assert {event.job for event in received[client]} == set(own)
        for job in own:
            steps = [e.step for e in received[client] if isinstance(e, Progress) and e.job == job]
            assert steps == sorted(steps) and steps
            assert sum(isinstance(e, Result) and e.job == job for e in received[client]) == 1


def test_client_disconnects_and_fetches_its_result_later(connect: Connect) -> None:
    blender = connect()
    job = blender.submit(GenerateRequest(prompt="while you were away steps=3"))
    blender.close()
    later = connect()
    deadline = time.monotonic() + 20
    while later.status(job).state != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    result = later.fetch_result(job)
    assert result is not None and result.meshes[0].name == "object"
    assert connect().wait(job, timeout_s=5) == result


def test_fetching_a_running_job_reattaches_its_stream(connect: Connect) -> None:
    first = connect()
    job = first.submit(GenerateRequest(prompt="reattach steps=20 step_ms=20"))
    first.close()
    second = connect()
    assert second.fetch_result(job) is None
    seen: list[Event] = []
    result = second.wait(job, on_event=seen.append, timeout_s=20)
    assert result.job == job
    assert any(isinstance(event, Progress) for event in seen)


def test_list_jobs_newest_first(connect: Connect) -> None:
    client = connect()
    first = client.submit(GenerateRequest(prompt="first steps=1"))
    second = client.submit(GenerateRequest(prompt="second steps=1"))
    for job in (first, second):
        client.wait(job, timeout_s=20)
    listed = client.list_jobs(limit=10)
    assert [summary.job for summary in listed] == [second, first]
    assert listed[0].title == "second steps=1" and listed[0].state == "done"
    assert len(client.list_jobs(limit=1)) == 1


def test_unknown_job(connect: Connect) -> None:
    client = connect()
    for call in (client.status, client.fetch_result, client.cancel):
        with pytest.raises(ProtocolError) as caught:
            call(new_job_id())
        assert caught.value.code == "unknown_job"


def test_resubmitting_the_same_job_id_is_idempotent(connect: Connect, jobs_dir: Path) -> None:
    client = connect()
    job = new_job_id()
    request = GenerateRequest(prompt="only once steps=10 step_ms=20", job=job)
    assert client.submit(request) == job
    assert connect().submit(request) == job
    client.wait(job, timeout_s=20)
    assert doubles.STARTED.count("only once steps=10 step_ms=20") == 1
    assert [path.name for path in jobs_dir.iterdir()] == [job]


def test_server_validates_what_a_raw_client_sends(server: Server) -> None:
    socket = raw_socket(server.address)
    socket.send_multipart(GenerateRequest(prompt="x" * 412).to_wire())
    error = receive(socket)
    assert isinstance(error, Error) and error.job is None
    assert (error.code, error.message) == ("too_large", "prompt: 412 characters, limit is 300")
    socket.send_multipart(GenerateRequest(prompt="ok", method="dreamfusion").to_wire())
    error = receive(socket)
    assert isinstance(error, Error) and error.code == "unknown_method"
    socket.send_multipart(GenerateRequest(prompt="ok", preset="ultra").to_wire())
    assert receive(socket).code == "unknown_preset"  # type: ignore[attr-defined]
    socket.send_multipart(GenerateRequest(prompt="ok", model="sd-xl").to_wire())
    assert receive(socket).code == "unknown_model"  # type: ignore[attr-defined]
    socket.send_multipart(Accepted(job=new_job_id(), queue_position=0).to_wire())
    assert receive(socket).code == "unknown_type"  # type: ignore[attr-defined]
    socket.close()


def test_client_checks_limits_and_offer_before_sending(connect: Connect) -> None:
    client = connect()
    with pytest.raises(ProtocolError, match="prompt: 301 characters, limit is 300"):
        client.submit(GenerateRequest(prompt="x" * 301))
    with pytest.raises(ProtocolError) as caught:
        client.submit(GenerateRequest(prompt="ok", method="dreamfusion"))
    assert caught.value.code == "unknown_method"
    assert client.list_jobs() == []


@pytest.mark.parametrize(
    ("prompt", "code", "fragment"),
    [
        ("fail", "bad_mesh", "meshes[0].glb: the double cannot read it"),
        ("crash", "internal", "RuntimeError: the double crashed"),
        ("nan", "internal", "invalid progress event: loss: NaN is not a finite number"),
        ("nores", "internal", "ended without a result"),
    ],
)
def test_pipeline_failures_become_error_events(
    connect: Connect, prompt: str, code: str, fragment: str
) -> None:
    client = connect()
    job = client.submit(GenerateRequest(prompt=prompt))
    with pytest.raises(ProtocolError) as caught:
        client.wait(job, timeout_s=20)
    assert caught.value.code == code
    assert fragment in caught.value.message
    assert client.status(job).state == "failed"
    with pytest.raises(ProtocolError) as again:
        client.fetch_result(job)
    assert again.value.code == code
    assert client.wait(client.submit(GenerateRequest(prompt="after steps=1")), timeout_s=20)


def test_warning_events_reach_the_client(connect: Connect) -> None:
    client = connect()
    seen: list[Event] = []
    client.wait(client.submit(GenerateRequest(prompt="unknownword steps=1")), on_event=seen.append)
    assert any(type(event).__name__ == "JobWarning" for event in seen)


def test_queue_full(jobs_dir: Path) -> None:
    with (
        running_server(jobs_dir, devices=(), max_queued=1) as server,
        Client(server.address) as client,
    ):
        client.submit(GenerateRequest(prompt="waits forever"))
        with pytest.raises(ProtocolError) as caught:
            client.submit(GenerateRequest(prompt="one too many"))
        assert caught.value.code == "queue_full"
        assert client.hello().device == "none"


def test_slow_client_never_blocks_the_others(jobs_dir: Path) -> None:
    with running_server(jobs_dir, devices=("cpu", "cpu"), client_hwm=4) as server:
        slow = raw_socket(server.address)
        slow.rcvhwm = 1
        slow.send_multipart(Hello().to_wire())
        assert isinstance(receive(slow), ServerInfo)
        flood = GenerateRequest(
            prompt="steps=250 step_ms=5 previews preview_kb=64", job=new_job_id()
        )
        slow.send_multipart(flood.to_wire())
        time.sleep(0.3)
        with Client(server.address) as other:
            other.wait(other.submit(GenerateRequest(prompt="steps=3")), timeout_s=30)
            assert other.status(str(flood.job)).state == "running", "not queued behind it"
            assert other.wait(str(flood.job), timeout_s=60).meshes[0].name == "object"
        log = (jobs_dir / str(flood.job) / "events.jsonl").read_text()
        assert "event not delivered" in log
        slow.close()


def test_oversized_messages_are_refused(jobs_dir: Path) -> None:
    limits = Limits(max_message_bytes=50_000, max_mesh_bytes=200_000)
    with running_server(jobs_dir, limits=limits) as server:
        socket = raw_socket(server.address)
        socket.send_multipart([b"x" * 100_000])
        assert not socket.poll(500), "MAXMSGSIZE drops the sender without a reply"
        socket.close()
        big = EditRequest(
            meshes=[MeshInput(name="Big", glb=make_glb(3000), transform=IDENTITY)],
            prompt="too big",
        )
        with Client(server.address) as client:
            with pytest.raises(ProtocolError) as caught:
                client.submit(big)
            assert caught.value.code == "too_large"
            assert "limit is 50000" in caught.value.message
            assert client.hello().limits.max_message_bytes == 50_000


def test_an_oversize_frame_gets_no_reply_so_the_client_refuses_to_send_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libzmq drops a frame over MAXMSGSIZE and the peer's connection without a word (a
    300 MB frame in issue 29); the client knows the limit and names it instead."""
    limits = Limits(max_message_bytes=2 * 2**20)
    oversize = Hello(client="x" * (3 * 2**20))
    with running_server(tmp_path / "jobs", devices=("cpu",), limits=limits) as server:
        socket = raw_socket(server.address)
        socket.send_multipart(oversize.to_wire())
        assert not socket.poll(1000), "libzmq answered an oversize frame after all"
        socket.close()
        monkeypatch.setattr(protocol.client, "DEFAULT_LIMITS", limits)  # as after a hello
        with (
            Client(server.address, client_name=oversize.client) as client,
            pytest.raises(ProtocolError) as caught,
        ):
            client.hello()
        assert caught.value.message.startswith(
            f"message: {sum(map(len, oversize.to_wire()))} bytes, limit is 2097152"
        )
        assert "without an answer" in caught.value.message
        with Client(server.address) as client:
            assert client.hello().limits == limits
