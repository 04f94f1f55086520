"""Local worker processes: they run and cancel jobs; one killed mid-job is replaced and its
job interrupted."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from protocol.client import Client
from protocol.errors import ProtocolError
from protocol.messages import GenerateRequest, Progress
from tests.backend.server.doubles import running_server


def test_worker_processes_run_and_cancel_jobs(tmp_path: Path) -> None:
    with (
        running_server(tmp_path / "jobs", devices=("cpu",), worker_processes=True) as server,
        Client(server.address) as client,
    ):
        done = client.submit(GenerateRequest(prompt="in a process steps=2"))
        assert client.wait(done, timeout_s=30).meshes[0].name == "object"
        long = client.submit(GenerateRequest(prompt="long steps=1000 step_ms=20"))
        while not any(isinstance(e, Progress) for e in client.poll(100)):
            pass
        client.cancel(long)
        with pytest.raises(ProtocolError, match="cancelled"):
            client.wait(long, timeout_s=10)


def test_a_killed_worker_process_is_replaced_and_its_job_interrupted(tmp_path: Path) -> None:
    with (
        running_server(tmp_path / "jobs", devices=("cpu",), worker_processes=True) as server,
        Client(server.address) as client,
    ):
        long = client.submit(GenerateRequest(prompt="long steps=1000 step_ms=20"))
        while not any(isinstance(e, Progress) for e in client.poll(100)):
            pass
        (pid,) = server.worker_pids
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ProtocolError, match="went away"):
            client.wait(long, timeout_s=10)
        after = client.submit(GenerateRequest(prompt="after the restart steps=2"))
        assert client.wait(after, timeout_s=30).meshes[0].name == "object"
        assert len(server.worker_pids) == 1 and server.worker_pids != [pid]
