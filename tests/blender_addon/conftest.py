"""Fixtures for the add-on tests: run a bpy scenario in a subprocess, serve a real backend.

bpy keeps global state (preferences, registered classes, the session thread) for the life
of the process, and it should not share one with torch, so each scenario runs in its own
Python with a throw-away BLENDER_USER_RESOURCES. Tests that need bpy skip cleanly when it
is not installed (it is in the `blender` extra: bpy 4.5-5.0 on Python 3.11).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.blender_addon.bpy_runner import RESULT_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("bpy_runner.py")
HAS_BPY = importlib.util.find_spec("bpy") is not None
SERVER_START_TIMEOUT_S = 1200.0
"""Importing torch and starting the workers: seconds when idle, 15 min seen under contention."""

needs_bpy = pytest.mark.skipif(not HAS_BPY, reason="bpy is not installed (pip install bpy)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def run_scenario(tmp_path: Path) -> Callable[..., dict]:
    """Run a scenario of scenarios.py in a bpy subprocess; returns its observations.

    `source_tree=False` leaves the repository off PYTHONPATH (the installed-zip case).
    """

    def run(name: str, *, timeout_s: float = 300.0, source_tree: bool = True, **kwargs) -> dict:
        env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user")}
        env.pop("PYTHONPATH", None)
        if source_tree:
            env["PYTHONPATH"] = str(REPO_ROOT)
        process = subprocess.run(
            [sys.executable, str(RUNNER), name, json.dumps(kwargs)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        lines = [line for line in process.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if process.returncode != 0 or not lines:
            pytest.fail(
                f"scenario {name} failed (exit {process.returncode})\n"
                f"--- stdout\n{process.stdout[-4000:]}\n--- stderr\n{process.stderr[-8000:]}"
            )
        return json.loads(lines[-1][len(RESULT_PREFIX) :])

    return run


def _wait_for_hello(address: str, process: subprocess.Popen, log: Path) -> None:
    from protocol.client import Client
    from protocol.errors import ServerUnreachable

    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the backend exited with {process.returncode}:\n{log.read_text()}")
        try:
            with Client(address, timeout_s=2.0, retries=0) as client:
                client.hello()
            return
        except ServerUnreachable:
            time.sleep(0.5)
    raise RuntimeError(f"no hello from the backend within {SERVER_START_TIMEOUT_S:g} s")


@pytest.fixture(scope="module")
def backend_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `boxdream serve` subprocess on loopback with the built-in model; its address.

    Uses the `--max-steps` development option so each job optimises only a few steps.
    """
    jobs = tmp_path_factory.mktemp("jobs")
    log = jobs / "server.log"
    address = f"tcp://127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "backend.cli", "serve", "--bind", address,
        "--jobs-dir", str(jobs), "--device", "cpu", "--max-steps", "4",
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_hello(address, process, log)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)
