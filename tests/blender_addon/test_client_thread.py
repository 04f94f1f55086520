"""The add-on's I/O thread without Blender: it connects, submits, follows a job to its result,
cancels, and reports an unreachable server, against the scripted server double."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blender_addon.client_thread import (
    CancelJob,
    Connect,
    Connected,
    ConnectionConfig,
    ConnectionLost,
    IOThread,
    JobEvent,
    JobFailed,
    Notice,
    Submit,
)
from blender_addon.protocol.frames import new_job_id
from blender_addon.protocol.messages import Cancelled, GenerateRequest, Progress, Result
from tests.backend.server.doubles import running_server
from tests.blender_addon.conftest import free_port


class Thread:
    """An `IOThread` with its two queues, stopped at the end of the test."""

    def __init__(self) -> None:
        self.commands: queue.Queue = queue.Queue()
        self.notices: queue.Queue[Notice] = queue.Queue()
        self.thread = IOThread(self.commands, self.notices)
        self.thread.start()
        self.seen: list[Notice] = []

    def wait_for(self, wanted: Callable[[Notice], bool], timeout_s: float = 10.0) -> Notice:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                notice = self.notices.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(notice)
            if wanted(notice):
                return notice
        raise AssertionError(f"no such notice in {timeout_s} s; seen {self.seen}")

    def stop(self) -> None:
        self.commands.put(None)
        self.thread.join(10)


@pytest.fixture
def io() -> Iterator[Thread]:
    thread = Thread()
    yield thread
    thread.stop()


def _config(address: str) -> ConnectionConfig:
    return ConnectionConfig(
        address=address, curve=None, timeout_s=0.5, heartbeat_s=0.5, retries=1, reconnect_s=1.0
    )


def _ended(job: str) -> Callable[[Notice], bool]:
    def ended(notice: Notice) -> bool:
        return (
            isinstance(notice, JobEvent)
            and notice.event.job == job
            and isinstance(notice.event, Result | Cancelled)
        )

    return ended


def test_follows_a_job_to_its_result(io: Thread, tmp_path: Path) -> None:
    with running_server(tmp_path / "jobs") as server:
        io.commands.put(Connect(_config(server.address)))
        connected = io.wait_for(lambda n: isinstance(n, Connected))
        assert connected.info.default_model == "tiny-shapes"
        job = new_job_id()
        io.commands.put(Submit(GenerateRequest(prompt="a cube steps=4", job=job)))
        result = io.wait_for(_ended(job)).event
        assert isinstance(result, Result) and result.meshes[0].name == "object"
        steps = [
            n.event.step
            for n in io.seen
            if isinstance(n, JobEvent) and isinstance(n.event, Progress)
        ]
        assert steps == [1, 2, 3, 4]


def test_cancel_reaches_the_server(io: Thread, tmp_path: Path) -> None:
    with running_server(tmp_path / "jobs") as server:
        io.commands.put(Connect(_config(server.address)))
        io.wait_for(lambda n: isinstance(n, Connected))
        job = new_job_id()
        io.commands.put(Submit(GenerateRequest(prompt="long steps=500 step_ms=20", job=job)))
        io.wait_for(lambda n: isinstance(n, JobEvent) and isinstance(n.event, Progress))
        io.commands.put(CancelJob(job))
        assert isinstance(io.wait_for(_ended(job)).event, Cancelled)


def test_an_unreachable_server_is_reported_and_a_submit_fails_with_why(io: Thread) -> None:
    io.commands.put(Connect(_config(f"tcp://127.0.0.1:{free_port()}")))
    lost = io.wait_for(lambda n: isinstance(n, ConnectionLost))
    assert lost.message
    job = new_job_id()
    io.commands.put(Submit(GenerateRequest(prompt="a cube", job=job)))
    failed = io.wait_for(lambda n: isinstance(n, JobFailed))
    assert failed.job == job and "not reachable" in failed.message
