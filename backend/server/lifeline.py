"""Local worker processes never outlive their server, nor leave its temporary folder behind.

A server killed with SIGKILL runs no clean-up, so each worker process watches its parent
itself: on Linux the kernel sends it SIGTERM when the parent dies (`prctl(PR_SET_PDEATHSIG)`),
and on every system a thread polls the parent pid every `PARENT_POLL_S` (macOS has no
parent-death signal). An orphaned worker removes the server's endpoint folder and exits at
once: its job cannot reach anyone, and the restarted server reports it interrupted.

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
    once the parent has gone, remove `endpoint` and exit."""

    def orphaned() -> None:
        log.error("the server (pid %d) has gone; this worker exits", parent_pid)
        if endpoint is not None:
            shutil.rmtree(endpoint, ignore_errors=True)
        os._exit(1)

    def on_term(*_: object) -> None:
        if os.getppid() != parent_pid:
            orphaned()
        stop.set()

    def poll() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        orphaned()

    signal.signal(signal.SIGTERM, on_term)
    _parent_death_signal(signal.SIGTERM)
    threading.Thread(target=poll, name="boxdream-parent-watch", daemon=True).start()
