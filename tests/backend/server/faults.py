"""Fault injection for the job store: a disk that fills or turns read-only, a crash at a
chosen step of its writes.

`Disk` has two kinds: "injected" makes the store's file writes fail with ENOSPC or EROFS
(runs anywhere); "tmpfs" mounts a real 400 KiB tmpfs, fills it with a file and remounts it
read-only (needs root; skipped where mounting is not allowed).
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from backend.server.access import Access

TMPFS_KIB = 400


class Crash(BaseException):
    """A simulated kill: not an `OSError`, so no clean-up code runs."""


class CrashAt:
    """Raises `Crash` at the `step`-th file operation of the job store (opening a file for
    writing, fsync, rename); counts the operations and notes when result.json is renamed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, step: int) -> None:
        self.step = step
        self.done = 0
        self.committed = False
        open_file, fsync, replace = Access.open_file, os.fsync, os.replace

        def counted(call, *args, **kwargs):  # type: ignore[no-untyped-def]
            if self.done == self.step:
                raise Crash
            self.done += 1
            return call(*args, **kwargs)

        def renamed(source: Path, target: Path) -> None:
            counted(replace, source, target)
            self.committed |= Path(target).name == "result.json"

        monkeypatch.setattr(Access, "open_file", lambda *a: counted(open_file, *a))
        monkeypatch.setattr(os, "fsync", lambda fd: counted(fsync, fd))
        monkeypatch.setattr(os, "replace", renamed)


class Disk:
    """The jobs folder of a test, on a disk that can fill up and turn read-only."""

    def __init__(self, kind: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kind = kind
        self.mount = root / "disk"
        self.jobs_dir = self.mount / "jobs"
        self._failure: int | None = None
        self.mount.mkdir()
        if kind == "tmpfs":
            self._run("mount", "-t", "tmpfs", "-o", f"size={TMPFS_KIB}k", "tmpfs", skip=True)
            return
        open_file = Access.open_file

        def failing(access: Access, path: Path, flags: int) -> int:
            if self._failure is not None and path.is_relative_to(self.mount):
                raise OSError(self._failure, os.strerror(self._failure), str(path))
            return open_file(access, path, flags)

        monkeypatch.setattr(Access, "open_file", failing)

    def _run(self, *command: str, skip: bool = False) -> None:
        done = subprocess.run([*command, str(self.mount)], capture_output=True, text=True)
        if done.returncode == 0:
            return
        if skip:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")

    def fill(self) -> None:
        """No space left from now on."""
        if self.kind == "injected":
            self._failure = errno.ENOSPC
            return
        with open(self.mount / "filler", "wb", buffering=0) as filler:
            try:
                while filler.write(b"\0" * 4096):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def free(self) -> None:
        """Space again."""
        self._failure = None
        (self.mount / "filler").unlink(missing_ok=True)

    def read_only(self) -> None:
        """Read-only from now on."""
        self._failure = errno.EROFS
        if self.kind == "tmpfs":
            self._run("mount", "-o", "remount,ro")

    def writable(self) -> None:
        """Writable again."""
        self._failure = None
        if self.kind == "tmpfs":
            self._run("mount", "-o", "remount,rw")

    def close(self) -> None:
        """Unmount a tmpfs."""
        if self.kind == "tmpfs":
            self._run("umount", "-l")
