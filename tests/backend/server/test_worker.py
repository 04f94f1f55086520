"""Workers as separate processes would run them: over tcp to the broker's worker endpoint;
workers that go away in the middle of a job."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import zmq

from backend.server.worker import JOB, READY, Worker
from protocol.client import Client
from protocol.errors import ProtocolError
from protocol.messages import GenerateRequest, Progress
from tests.backend.server.doubles import running_server, scripted_pipeline


def test_remote_worker_over_tcp_runs_jobs(tmp_path: Path) -> None:
    with running_server(tmp_path / "jobs", devices=(), worker_bind="tcp://127.0.0.1:*") as server:
        assert server.worker_address is not None
        stop = threading.Event()
        worker = Worker(
            address=server.worker_address,
            device="cuda:7",
            pipeline=scripted_pipeline,
            context=zmq.Context(),
            name="remote",
        )
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        with Client(server.address) as client:
            job = client.submit(GenerateRequest(prompt="queued before the worker steps=2"))
            assert client.status(job).state == "queued"
            thread.start()
            assert client.wait(job, timeout_s=20).meshes[0].name == "object"
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def test_garbage_on_the_worker_endpoint_is_dropped(tmp_path: Path) -> None:
    with running_server(
        tmp_path / "jobs", devices=("cpu",), worker_bind="tcp://127.0.0.1:*"
    ) as server:
        assert server.worker_address is not None
        rogue = zmq.Context.instance().socket(zmq.DEALER)
        rogue.linger = 0
        rogue.connect(server.worker_address)
        for frames in ([b"READY", b"{not json"], [b"EVENT", b"\xff"], [b"HELLO"], [b"READY"]):
            rogue.send_multipart(frames)
        rogue.close()
        with Client(server.address) as client:
            job = client.submit(GenerateRequest(prompt="still works steps=2"))
            assert client.wait(job, timeout_s=20).job == job


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


def test_a_remote_worker_lost_mid_job_interrupts_the_job_with_a_clear_error(
    tmp_path: Path,
) -> None:
    """A worker that takes a job and vanishes (its socket closes, as when its process is
    killed) must not leave the job running forever."""
    with running_server(tmp_path / "jobs", devices=(), worker_bind="tcp://127.0.0.1:*") as server:
        assert server.worker_address is not None
        doomed = zmq.Context.instance().socket(zmq.DEALER)
        doomed.linger = 0
        doomed.connect(server.worker_address)
        doomed.send_multipart(
            [READY, json.dumps({"device": "cuda:3", "name": "doomed", "jobs": 0}).encode()]
        )
        with Client(server.address) as client:
            job = client.submit(GenerateRequest(prompt="a job for the doomed worker"))
            assert doomed.poll(5000), "the broker never handed out the job"
            assert doomed.recv_multipart()[0] == JOB
            assert client.status(job).state == "running"
            doomed.close()
            started = time.monotonic()
            with pytest.raises(ProtocolError, match=r"doomed.*went away") as raised:
                client.wait(job, timeout_s=10)
            assert raised.value.code == "interrupted"
            assert time.monotonic() - started < 5
            assert client.status(job).state == "interrupted"


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
