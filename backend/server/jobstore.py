"""Jobs on disk: one folder per job under the jobs dir, written atomically.

    JOBS_DIR/<job id>/
        request.json, request.<i>.glb   the request (header frame, then its binary frames)
        status.json                     kind, state, title, times, error
        events.jsonl                    one line per event (binary frames as sizes) and log lines
        preview.png                     the latest preview
        result.json, result.<i>.glb     the result, once done

Every file is written to a temporary name, flushed and fsynced, then renamed over the target,
so a crash leaves either the old or the new file. A result is committed by the rename of
result.json, written after its GLBs: a job whose result.json is complete is done, whatever
status.json says (`recover` completes it). Files and folders are private unless the store
is shared with a group (`backend.server.access`).

A write that fails (disk full, read-only) raises `StorageError`, naming the jobs folder and
the cause, and leaves no partial file; a state that could not be written is kept in memory
and reported until the server restarts. Only the broker thread uses a `JobStore`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from backend.server.access import Access
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import check_job_id, header_summary
from protocol.glb import GLB_MAGIC
from protocol.limits import Limits
from protocol.messages import (
    JOB_REQUEST_TYPES,
    PNG_SIGNATURE,
    Error,
    JobRequest,
    JobState,
    JobSummary,
    Message,
    Result,
    decode_message,
    job_title,
)

log = logging.getLogger("boxdream.server.jobs")

REQUEST = "request"
RESULT = "result"
STATUS_FILE = "status.json"
EVENTS_FILE = "events.jsonl"
PREVIEW_FILE = "preview.png"
UNFINISHED_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})
CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
"""Short causes of the write errors an operator can fix."""


class StorageError(ProtocolError):
    """The jobs folder could not be written; the message names it, the cause and the step."""

    def __init__(self, root: Path, exc: OSError, doing: str) -> None:
        cause = CAUSES.get(exc.errno or 0, "write error")
        detail = exc.strerror or str(exc)
        super().__init__(
            ErrorCode.INTERNAL, "", f"jobs folder {root}: {cause} ({detail}) while {doing}"
        )


@dataclass(frozen=True)
class JobRecord:
    """The content of a job's status.json."""

    job: str
    """The job id."""
    kind: str
    """A `JobKind` value."""
    state: str
    """A `JobState` value."""
    title: str
    """The job's prompt, for lists."""
    created_at: float
    """Unix time the job was accepted."""
    updated_at: float
    """Unix time of the last state change."""
    error: dict[str, str] | None = None
    """For a failed or interrupted job: code, field and message of its `Error` event."""

    def summary(self) -> JobSummary:
        """The job-list line for this job."""
        return JobSummary(
            job=self.job,
            kind=self.kind,
            state=self.state,
            title=self.title,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    def error_event(self) -> Error:
        """The `Error` event of a failed or interrupted job."""
        details = self.error or {
            "code": ErrorCode.INTERNAL,
            "field": "",
            "message": "the job failed without an error message",
        }
        return Error.of(ProtocolError(**details), self.job)


def write_atomic(path: Path, data: bytes, access: Access, *, durable: bool = True) -> None:
    """Write `data` to `path` through a temporary file and a rename; on error the temporary
    file is removed.

    `durable` also fsyncs the data before the rename and the folder after it (skipped for
    disposable previews).
    """
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(access.open_file(temporary, os.O_TRUNC), "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _extension(blob: bytes) -> str:
    if blob.startswith(GLB_MAGIC):
        return "glb"
    if blob.startswith(PNG_SIGNATURE):
        return "png"
    return "bin"


class JobStore:
    """The jobs dir: create jobs, record their events and state, keep their results."""

    def __init__(self, root: Path, limits: Limits, access: Access | None = None) -> None:
        """`access`: who may read the jobs (default: the server's user only)."""
        self._root = Path(root)
        self._limits = limits
        self._access = access or Access()
        self._unwritten: dict[str, JobRecord] = {}
        try:
            with self._writing("preparing it"):
                self._access.make_folder(self._root, parents=True)
        except StorageError as error:
            if not self._root.is_dir():
                raise
            log.warning("%s; serving the jobs it holds", error.message)

    @property
    def root(self) -> Path:
        """The jobs dir."""
        return self._root

    def _dir(self, job: str) -> Path:
        return self._root / check_job_id(job, "job")

    @contextlib.contextmanager
    def _writing(self, doing: str) -> Iterator[None]:
        """Turn an `OSError` into a `StorageError` that says what was being done."""
        try:
            yield
        except OSError as exc:
            raise StorageError(self._root, exc, doing) from exc

    def exists(self, job: str) -> bool:
        """Whether the job was created (its status.json exists)."""
        return job in self._unwritten or (self._dir(job) / STATUS_FILE).is_file()

    def recover(self, *, keep_queued: bool = False, running: Collection[str] = ()) -> list[str]:
        """Finish what a previous server left: a job whose result was committed is done;
        other queued or running jobs are interrupted and their partial files removed, except
        queued ones with `keep_queued` and the `running` jobs still running (a Ray pool's).
        Returns the interrupted jobs."""
        interrupted = []
        for status_file in sorted(self._root.glob(f"*/{STATUS_FILE}")):
            folder = status_file.parent
            try:
                record = self.record(folder.name)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("skipping unreadable job folder %s: %s", folder, exc)
                continue
            if record.state not in UNFINISHED_STATES:
                continue
            done = self._has_result(record.job)
            kept = record.job in running or (keep_queued and record.state == JobState.QUEUED)
            if kept and not done:
                continue
            try:
                with self._writing("removing partial files"):
                    for leftover in folder.glob(".*.tmp"):
                        leftover.unlink()
                    if not done:
                        self._remove(folder, RESULT)
            except StorageError as error:
                log.error("job %s: %s", record.job, error.message)
            if done:
                log.info("job %s: its result was committed; marking it done", record.job)
                self._recover_state(record.job, JobState.DONE)
                continue
            self._recover_state(
                record.job,
                JobState.INTERRUPTED,
                Error(
                    code=ErrorCode.INTERRUPTED,
                    field="job",
                    message=f"job {record.job} was interrupted: the server stopped "
                    "before it finished; submit it again",
                ),
            )
            interrupted.append(record.job)
        return interrupted

    def _recover_state(self, job: str, state: JobState, error: Error | None = None) -> None:
        try:
            self.set_state(job, state, error)
        except StorageError as failure:
            log.error("job %s: %s; it is %s until a restart", job, failure.message, state)

    def create(self, request: JobRequest) -> JobRecord:
        """Store a job's request and its queued status; `request.job` names it. A job of
        that id (an interrupted one being submitted again) is replaced. On a `StorageError`
        nothing of the job is left."""
        assert request.job is not None
        folder = self._dir(request.job)
        now = time.time()
        record = JobRecord(
            job=request.job,
            kind=request.TYPE,
            state=JobState.QUEUED,
            title=job_title(request)[: self._limits.max_prompt_chars],
            created_at=now,
            updated_at=now,
        )
        fresh = not folder.exists()
        try:
            with self._writing("storing a new job"):
                self._access.make_folder(folder)
                for stem in (REQUEST, RESULT):
                    self._remove(folder, stem)
                self._write_message(folder, REQUEST, request.to_wire())
            self._write_record(record)
        except StorageError:
            if fresh:
                with contextlib.suppress(OSError):
                    self._remove(folder, REQUEST)
                    folder.rmdir()
            raise
        self._unwritten.pop(request.job, None)
        return record

    def record(self, job: str) -> JobRecord:
        """The job's status (status.json, or the state it could not be written with);
        `FileNotFoundError` for an unknown job."""
        if job in self._unwritten:
            return self._unwritten[job]
        data = json.loads((self._dir(job) / STATUS_FILE).read_text("utf-8"))
        return JobRecord(**data)

    def set_state(self, job: str, state: JobState, error: Error | None = None) -> JobRecord:
        """Move a job to `state`, recording the error of a failed or interrupted job.

        Raises `StorageError` if status.json cannot be written; the new state is then kept
        in memory (`record`, `list`) until the server restarts.
        """
        details = (
            None
            if error is None
            else {
                "code": error.code,
                "field": error.field,
                "message": error.message,
            }
        )
        record = replace(self.record(job), state=state, updated_at=time.time(), error=details)
        try:
            self._write_record(record)
        except StorageError:
            self._unwritten[job] = record
            raise
        self._unwritten.pop(job, None)
        with contextlib.suppress(StorageError):
            self.log(job, f"state {state}")
        return record

    def append_event(self, job: str, frames: list[bytes]) -> None:
        """Add one event to events.jsonl (binary frames appear as their sizes)."""
        self._append(job, {"t": time.time(), **header_summary(frames)})

    def log(self, job: str, message: str) -> None:
        """Add a log line to events.jsonl."""
        self._append(job, {"t": time.time(), "type": "log", "message": message})

    def save_preview(self, job: str, png: bytes) -> None:
        """Keep the latest preview image."""
        with self._writing("saving a preview"):
            write_atomic(self._dir(job) / PREVIEW_FILE, png, self._access, durable=False)

    def commit_result(self, job: str, result: Result, frames: list[bytes]) -> None:
        """Store a job's result and mark it done, in one atomic step: the GLB files, then
        result.json (the commit), then the event and status.json.

        Raises `StorageError`, with no result file left, if the result could not be stored.
        Once result.json is written the job is done: if status.json cannot say so, memory
        does until a restart, whose `recover` finds the result.
        """
        folder = self._dir(job)
        try:
            with self._writing("storing the result"):
                self._write_message(folder, RESULT, result.to_wire())
        except StorageError:
            with contextlib.suppress(OSError):
                self._remove(folder, RESULT)
            raise
        with contextlib.suppress(StorageError):
            self.append_event(job, frames)
        try:
            self.set_state(job, JobState.DONE)
        except StorageError as error:
            log.error("job %s is done, but %s", job, error.message)

    def load_result(self, job: str) -> Result:
        """The stored result of a finished job."""
        message = self._read_message(job, RESULT, (Result,))
        assert isinstance(message, Result)
        return message

    def load_request(self, job: str) -> JobRequest:
        """The stored request of a job."""
        message = self._read_message(job, REQUEST, JOB_REQUEST_TYPES)
        assert isinstance(message, JobRequest)
        return message

    def unfinished(self) -> list[JobRecord]:
        """The queued and running jobs, oldest first."""
        records = [record for record in self.list(None) if record.state in UNFINISHED_STATES]
        return sorted(records, key=lambda record: record.created_at)

    def list(self, limit: int | None) -> list[JobRecord]:
        """The newest `limit` jobs (None: all), newest first."""
        records = []
        for status_file in self._root.glob(f"*/{STATUS_FILE}"):
            try:
                records.append(self.record(status_file.parent.name))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable job folder %s: %s", status_file.parent, exc)
        records.sort(key=lambda record: record.created_at, reverse=True)
        return records[:limit]

    def _has_result(self, job: str) -> bool:
        """Whether a complete result is on disk (result.json and every frame it names)."""
        try:
            self.load_result(job)
        except (OSError, ProtocolError):
            return False
        return True

    def _write_record(self, record: JobRecord) -> None:
        data = json.dumps(asdict(record), indent=1).encode("utf-8")
        with self._writing(f"recording job {record.job} as {record.state}"):
            write_atomic(self._dir(record.job) / STATUS_FILE, data, self._access)

    def _append(self, job: str, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with (
            self._writing("logging an event"),
            open(self._access.open_file(self._dir(job) / EVENTS_FILE, os.O_APPEND), "a") as handle,
        ):
            handle.write(line)

    def _write_message(self, folder: Path, stem: str, frames: list[bytes]) -> None:
        for index, blob in enumerate(frames[1:], start=1):
            write_atomic(folder / f"{stem}.{index}.{_extension(blob)}", blob, self._access)
        write_atomic(folder / f"{stem}.json", frames[0], self._access)

    @staticmethod
    def _remove(folder: Path, stem: str) -> None:
        """Delete `<stem>.json` and `<stem>.<i>.*`: the message before it is rewritten, or
        what a failed write left."""
        for path in (folder / f"{stem}.json", *folder.glob(f"{stem}.*.*")):
            path.unlink(missing_ok=True)

    def _read_message(self, job: str, stem: str, accepted: tuple[type[Message], ...]) -> Message:
        folder = self._dir(job)
        frames = [(folder / f"{stem}.json").read_bytes()]
        while True:
            found = sorted(folder.glob(f"{stem}.{len(frames)}.*"))
            if not found:
                break
            frames.append(found[0].read_bytes())
        return decode_message(frames, self._limits, accepted)
