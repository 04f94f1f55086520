"""A server killed or stopped mid-job, restarted on the same jobs dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from protocol.client import Client
from protocol.errors import ProtocolError
from protocol.frames import new_job_id
from protocol.messages import Error, GenerateRequest, Progress
from tests.backend.server.doubles import running_server

REPO = Path(__file__).resolve().parents[3]


@contextmanager
def server_process(
    jobs_dir: Path, processes: int = 0, temp: Path | None = None, ray: str | None = None
) -> Iterator[tuple[subprocess.Popen[str], str, list[int]]]:
    """`doubles.py` serving in a child process, with `processes` worker processes (else a
    worker thread, or the `ray` cluster's actors) and `temp` as its temporary folder; yields
    it, its address and the worker process ids."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if temp is not None:
        env["TMPDIR"] = str(temp)
    command = [sys.executable, "-m", "tests.backend.server.doubles", "--jobs-dir", str(jobs_dir)]
    process = subprocess.Popen(
        [*command, "--processes", str(processes), *(["--ray", ray] if ray else [])],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        address, *pids = process.stdout.readline().split() or [""]
        assert address.startswith("tcp://127.0.0.1:"), "the server did not start"
        yield process, address, [int(pid) for pid in pids]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def wait_for_step(client: Client, job: str, step: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for event in client.poll(100):
            if isinstance(event, Progress) and event.job == job and event.step >= step:
                return
    raise AssertionError(f"job {job} never reached step {step}")


def test_killed_server_keeps_results_and_reports_interrupted_jobs(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    with (
        server_process(jobs_dir) as (process, address, _),
        Client(address, timeout_s=1.0, retries=1) as client,
    ):
        finished = client.submit(GenerateRequest(prompt="finished steps=2"))
        client.wait(finished, timeout_s=20)
        running = client.submit(GenerateRequest(prompt="running steps=1000 step_ms=20"))
        wait_for_step(client, running, 2)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        noticed = time.monotonic()
        with pytest.raises(ConnectionError, match=address):
            client.wait(running, timeout_s=30)
        assert time.monotonic() - noticed < 5
    with server_process(jobs_dir) as (_, address, _), Client(address) as client:
        result = client.fetch_result(finished)
        assert result is not None and result.meshes[0].name == "object"
        assert client.status(running).state == "interrupted"
        with pytest.raises(ProtocolError) as caught:
            client.wait(running, timeout_s=5)
        assert caught.value.code == "interrupted"
        assert "submit it again" in caught.value.message
        states = {summary.job: summary.state for summary in client.list_jobs()}
        assert states == {finished: "done", running: "interrupted"}


def test_stopped_server_tells_clients_and_marks_jobs_interrupted(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    with running_server(jobs_dir, devices=("cpu",)) as server, Client(server.address) as client:
        running = client.submit(GenerateRequest(prompt="long steps=1000 step_ms=20"))
        queued = client.submit(GenerateRequest(prompt="queued behind it"))
        wait_for_step(client, running, 1)
        server.stop()
        errors = [e for e in client.poll(2000) if isinstance(e, Error)]
        errors += [e for e in client.poll(500) if isinstance(e, Error)]
        assert {(e.job, e.code) for e in errors} == {
            (running, "interrupted"),
            (queued, "interrupted"),
        }
    with running_server(jobs_dir) as server, Client(server.address) as client:
        assert client.status(running).state == "interrupted"
        assert client.status(queued).state == "interrupted"


def test_an_interrupted_job_submitted_again_runs_again(tmp_path: Path) -> None:
    jobs_dir, job = tmp_path / "jobs", new_job_id()
    request = GenerateRequest(prompt="again steps=1000 step_ms=20", job=job)
    with running_server(jobs_dir, devices=("cpu",)) as server, Client(server.address) as client:
        client.submit(request)
        wait_for_step(client, job, 1)
    with running_server(jobs_dir, devices=("cpu",)) as server, Client(server.address) as client:
        assert client.status(job).state == "interrupted"
        assert client.submit(replace(request, prompt="again steps=2")) == job
        assert client.wait(job, timeout_s=10).meshes
        assert client.status(job).state == "done"
        assert client.submit(request) == job  # a finished job is not run again
        assert client.status(job).state == "done"
