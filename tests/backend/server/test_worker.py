"""Workers as separate processes would run them: over tcp to the broker's worker endpoint."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import zmq

from backend.server.worker import Worker
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
