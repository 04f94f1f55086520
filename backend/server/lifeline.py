"""Local worker processes never outlive their server, nor leave its temporary folder behind.

A server killed with SIGKILL runs no clean-up, so each worker process watches its parent
itself: on Linux the kernel sends it `PARENT_DEATH_SIGNAL` (`prctl(PR_SET_PDEATHSIG)`), and on
every system a thread polls the parent pid every `PARENT_POLL_S` (macOS has no parent-death
signal). An orphaned worker removes the server's endpoint folder and exits at once: its job
cannot reach anyone, and the restarted server reports it interrupted.

Linux sends the parent-death signal when the *thread* that started the worker ends. While a
killed server's threads end one by one, it can arrive with the server's other threads still
there, `getppid()` still the server's pid. It is therefore a signal of its own, apart from the
SIGTERM of a clean shutdown: a worker that finds its server still there ignores it (the poll
sees the server gone within `PARENT_POLL_S`). When both were SIGTERM, such a worker took it
for a clean shutdown and exited leaving the endpoint folder behind (1 folder in 10 kill -9
cycles on a loaded 2-core machine, 2026-12-07).

The endpoint folder (`boxdream-<random>` in the temporary folder, holding the workers' ipc
socket) is removed by `Server.stop`; one left by a crash is removed by the next server that
starts (`reap_endpoint_folders`): a folder whose socket accepts no connection is stale.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("boxdream.server.lifeline")

PARENT_POLL_S = 0.5
"""How often a worker process checks that its server still runs."""
ENDPOINT_PREFIX = "boxdream-"
"""Name prefix of endpoint folders."""
ENDPOINT_SOCKET = "workers"
"""The workers' ipc socket inside an endpoint folder."""
STARTING_S = 60.0
"""An endpoint folder without its socket is left alone this long (its server is starting)."""
PARENT_DEATH_SIGNAL = signal.SIGUSR1
"""The signal Linux sends a worker when the server thread that started it ends."""
_PR_SET_PDEATHSIG = 1


def make_endpoint_folder() -> Path:
    """A new private endpoint folder; its socket is `folder / ENDPOINT_SOCKET`."""
    return Path(tempfile.mkdtemp(prefix=ENDPOINT_PREFIX))


def _in_use(folder: Path) -> bool:
    path = folder / ENDPOINT_SOCKET
    if not path.exists():
        return time.time() - folder.stat().st_mtime < STARTING_S
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def reap_endpoint_folders() -> list[Path]:
    """Remove this user's endpoint folders that no running server uses; returns them."""
    reaped = []
    for folder in Path(tempfile.gettempdir()).glob(f"{ENDPOINT_PREFIX}*"):
        try:
            if not folder.is_dir() or folder.stat().st_uid != os.getuid() or _in_use(folder):
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    return reaped


def _parent_death_signal(signum: int) -> None:
    """Ask Linux to send `signum` to this process when its parent dies (elsewhere: no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d)", ctypes.get_errno())


def watch_parent(parent_pid: int, stop: threading.Event, endpoint: Path | None) -> None:
    """In a worker process: SIGTERM from a running parent sets `stop` (a clean shutdown);
    once the parent has gone (`PARENT_DEATH_SIGNAL`, SIGTERM or the poll finding it so),
    remove `endpoint` and exit."""

    def orphaned() -> None:
        log.error("the server (pid %d) has gone; this worker exits", parent_pid)
        if endpoint is not None:
            shutil.rmtree(endpoint, ignore_errors=True)
        os._exit(1)

    def on_term(*_: object) -> None:
        if os.getppid() != parent_pid:
            orphaned()
        stop.set()

    def on_parent_thread_end(*_: object) -> None:
        if os.getppid() != parent_pid:
            orphaned()

    def poll() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        orphaned()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(PARENT_DEATH_SIGNAL, on_parent_thread_end)
    _parent_death_signal(PARENT_DEATH_SIGNAL)
    threading.Thread(target=poll, name="boxdream-parent-watch", daemon=True).start()
