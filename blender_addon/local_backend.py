"""A BoxDream server started from the add-on preferences, as a child process with a log file.

Only the process this module started is ever stopped, by its own handle.
"""

from __future__ import annotations

import atexit
import os
import shlex
import subprocess
from collections import deque
from pathlib import Path

STOP_TIMEOUT_S = 5.0
"""Seconds a stopping server gets to exit after SIGTERM before it is killed."""


class LocalBackend:
    """Start, stop and watch one local server process."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._command = ""

    @property
    def running(self) -> bool:
        """Whether the process started here is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        """The log file of the last start, or None."""
        return self._log_path

    @property
    def command(self) -> str:
        """The command line of the last start."""
        return self._command

    @property
    def status(self) -> str:
        """One line for the preferences: running, exited with a code, or never started."""
        if self._process is None:
            return "not started"
        code = self._process.poll()
        if code is None:
            return f"running (pid {self._process.pid})"
        return f"exited with code {code}"

    def start(self, command: str, log_path: Path) -> None:
        """Run `command` (split like a shell would, no shell involved), output to `log_path`.

        Raises ValueError for an empty command, RuntimeError if one is already running and
        OSError if the program cannot be started.
        """
        if self.running:
            raise RuntimeError(f"a local backend is already running: {self.status}")
        arguments = shlex.split(command, posix=os.name != "nt")
        if not arguments:
            raise ValueError("the local backend command is empty")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            log.write(f"$ {command}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                arguments,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            )
        self._log_path = log_path
        self._command = command

    def stop(self) -> None:
        """Terminate the process started here (kill it if it does not exit in time)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 12) -> list[str]:
        """The last `lines` lines of the log, or [] before the first start."""
        if self._log_path is None or not self._log_path.exists():
            return []
        with self._log_path.open("r", encoding="utf-8", errors="replace") as log:
            return [line.rstrip("\n") for line in deque(log, maxlen=lines)]


LOCAL_BACKEND = LocalBackend()
"""The one local backend of this Blender session (stopped when Blender exits)."""
atexit.register(LOCAL_BACKEND.stop)
