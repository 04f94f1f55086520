"""Endpoint folders left by a crashed server are removed by the next one."""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from backend.server.lifeline import PARENT_POLL_S, reap_endpoint_folders, watch_parent


def test_only_endpoint_folders_nobody_serves_are_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folders = {name: tmp_path / name for name in ("boxdream-dead", "boxdream-live", "boxdream-new")}
    for folder in folders.values():
        folder.mkdir()
    (tmp_path / "unrelated").mkdir()
    with (
        socket.socket(socket.AF_UNIX) as dead,
        socket.socket(socket.AF_UNIX) as live,
    ):
        dead.bind(str(folders["boxdream-dead"] / "workers"))
        live.bind(str(folders["boxdream-live"] / "workers"))
        live.listen()
        assert reap_endpoint_folders() == [folders["boxdream-dead"]]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "boxdream-live",
        "boxdream-new",
        "unrelated",
    ]


def _watching(parent_pid: int, endpoint: Path, ready: Path) -> None:
    """A stand-in worker process: watch the parent, say so, then wait for a clean stop."""
    stop = threading.Event()
    watch_parent(parent_pid, stop, endpoint)
    ready.touch()
    stop.wait(30)
    (ready.parent / "stopped").touch()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
def test_a_worker_outlives_the_server_thread_that_started_it(tmp_path: Path) -> None:
    # Linux signals a worker when the thread that started it ends, which in a killed server
    # can come while its other threads still stand: the worker must not take that for its
    # server's death, nor for a clean shutdown.
    endpoint, ready = tmp_path / "boxdream-endpoint", tmp_path / "ready"
    endpoint.mkdir()
    started: list[multiprocessing.process.BaseProcess] = []

    def start() -> None:  # on a thread that ends once the worker watches
        process = multiprocessing.get_context("spawn").Process(
            target=_watching, args=(os.getpid(), endpoint, ready), daemon=True
        )
        process.start()
        started.append(process)
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    (process,) = started
    assert ready.exists(), "the worker never started watching"
    time.sleep(3 * PARENT_POLL_S)
    assert process.is_alive() and endpoint.exists()
    process.terminate()  # a clean shutdown: the server removes its folder itself
    process.join(10)
    assert process.exitcode == 0 and (tmp_path / "stopped").exists() and endpoint.exists()
