"""The job server's reliability goals (issue 29), measured; run with `-s` to see the numbers.

- kill -9 of a server with jobs running: 0 worker processes left, 0 endpoint folders left
  (3 cycles here, 10 in the slow run);
- a disk that fills or turns read-only under queued and running jobs: 0 jobs stuck;
- p99 latency of a well-behaved client's hello while another sends 100 hostile headers
  (0.93 MB of nested lists each): under 100 ms.
(Every crash point of the result commit: `test_jobstore.py`.)
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import threading
import time
from pathlib import Path

import pytest
import zmq

from protocol.client import Client
from protocol.errors import ProtocolError
from protocol.messages import TERMINAL_STATES, GenerateRequest
from protocol.version import PROTOCOL_VERSION
from tests.backend.server.doubles import running_server
from tests.backend.server.faults import Disk
from tests.backend.server.test_restart import server_process, wait_for_step

HOSTILE_MESSAGES = 100


def _alive(pid: int) -> bool:
    """Whether process `pid` runs: not a zombie where there is /proc, else (macOS, whose
    launchd reaps orphans at once) whether it can be signalled."""
    if Path("/proc/self").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _alive_after(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


@pytest.mark.parametrize("cycles", [3, pytest.param(10, marks=pytest.mark.slow)])
def test_kill_9_leaves_no_worker_and_no_endpoint_folder(tmp_path: Path, cycles: int) -> None:
    temp, jobs_dir = tmp_path / "tmp", tmp_path / "jobs"
    temp.mkdir()
    orphans: list[int] = []
    leftovers = 0
    for cycle in range(cycles):
        with server_process(jobs_dir, processes=2, temp=temp) as (process, address, pids):
            assert len(pids) == 2
            with Client(address) as client:
                job = client.submit(GenerateRequest(prompt=f"cycle {cycle} steps=1000 step_ms=20"))
                wait_for_step(client, job, 1)
            process.kill()
            process.wait(10)
            orphans += _alive_after(pids, 5.0)
        leftovers += len(list(temp.glob("boxdream-*")))
    print(f"\nkill -9 x {cycles}: {len(orphans)} orphan workers, {leftovers} endpoint folders left")
    assert orphans == [] and leftovers == 0


@pytest.mark.parametrize("fault", ["fill", "read_only"])
def test_disk_faults_leave_no_job_stuck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    disk = Disk("injected", tmp_path, monkeypatch)
    with (
        running_server(disk.jobs_dir, devices=("cpu",)) as server,
        Client(server.address) as client,
    ):
        jobs = [
            client.submit(GenerateRequest(prompt=f"job {i} steps=5 step_ms=20")) for i in range(4)
        ]
        wait_for_step(client, jobs[0], 1)
        getattr(disk, fault)()
        for job in jobs:
            with contextlib.suppress(ProtocolError):
                client.wait(job, timeout_s=10)
        stuck = [job for job in jobs if client.status(job).state not in TERMINAL_STATES]
        states = sorted(client.status(job).state for job in jobs)
    print(f"\n{fault}: {len(stuck)} of {len(jobs)} jobs stuck; states {states}")
    assert stuck == [] and "failed" in states


def _hostile_header() -> bytes:
    nested = [json.loads("[" * 30 + "]" * 30)] * 15000
    header = {"v": PROTOCOL_VERSION, "type": "generate", "job": None, "fields": {"prompt": nested}}
    return json.dumps(header).encode()


def test_hello_stays_fast_while_another_client_sends_hostile_headers(tmp_path: Path) -> None:
    hostile = _hostile_header()
    assert len(hostile) > 900_000
    with (
        running_server(tmp_path / "jobs", devices=("cpu",)) as server,
        Client(server.address) as client,
    ):
        client.hello()
        socket = zmq.Context.instance().socket(zmq.DEALER)
        socket.linger = 0
        socket.connect(server.address)

        def attack() -> None:
            for _ in range(HOSTILE_MESSAGES):
                socket.send(hostile)
            for _ in range(HOSTILE_MESSAGES):
                if not socket.poll(30_000):
                    return
                socket.recv_multipart()

        attacker = threading.Thread(target=attack)
        attacker.start()
        latencies = []
        while attacker.is_alive():
            started = time.perf_counter()
            client.hello()
            latencies.append(time.perf_counter() - started)
        attacker.join()
        socket.close()
    p99 = (
        statistics.quantiles(latencies, n=100, method="inclusive")[98]
        if len(latencies) > 1
        else latencies[0]
    )
    print(
        f"\nhello under {HOSTILE_MESSAGES} hostile headers of {len(hostile) / 1e6:.2f} MB: "
        f"{len(latencies)} hellos, median {statistics.median(latencies) * 1e3:.1f} ms, "
        f"p99 {p99 * 1e3:.1f} ms, max {max(latencies) * 1e3:.1f} ms"
    )
    assert p99 < 0.100
