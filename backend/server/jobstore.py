"""Jobs on disk: one folder per job under the jobs dir, written atomically.

    JOBS_DIR/<job id>/
        request.json, request.<i>.glb   the request (header frame, then its binary frames)
        status.json                     kind, state, title, times, error
        events.jsonl                    one line per event (binary frames as sizes) and log lines
        preview.png                     the latest preview
        result.json, result.<i>.glb     the result, once done

Every file is written to a temporary name, flushed and fsynced, then renamed over the target,
so a crash leaves either the old or the new file. Only the broker thread uses a `JobStore`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

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


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` through a temporary file and a rename.

    `durable` also fsyncs the data before the rename (skipped for disposable previews).
    """
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)


def _extension(blob: bytes) -> str:
    if blob.startswith(GLB_MAGIC):
        return "glb"
    if blob.startswith(PNG_SIGNATURE):
        return "png"
    return "bin"


class JobStore:
    """The jobs dir: create jobs, record their events and state, keep their results."""

    def __init__(self, root: Path, limits: Limits) -> None:
        self._root = Path(root)
        self._limits = limits
        self._root.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        """The jobs dir."""
        return self._root

    def _dir(self, job: str) -> Path:
        return self._root / check_job_id(job, "job")

    def exists(self, job: str) -> bool:
        """Whether the job was created (its status.json exists)."""
        return (self._dir(job) / STATUS_FILE).is_file()

    def recover(self) -> list[str]:
        """Mark jobs left queued or running by a previous server as interrupted."""
        interrupted = []
        for status_file in sorted(self._root.glob(f"*/{STATUS_FILE}")):
            for leftover in status_file.parent.glob(".*.tmp"):
                leftover.unlink()
            try:
                record = self.record(status_file.parent.name)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("skipping unreadable job folder %s: %s", status_file.parent, exc)
                continue
            if record.state in UNFINISHED_STATES:
                self.set_state(
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

    def create(self, request: JobRequest) -> JobRecord:
        """Store a new job's request and its queued status; `request.job` names it."""
        assert request.job is not None
        folder = self._dir(request.job)
        folder.mkdir(exist_ok=True)
        self._write_message(folder, REQUEST, request.to_wire())
        now = time.time()
        record = JobRecord(
            job=request.job,
            kind=request.TYPE,
            state=JobState.QUEUED,
            title=job_title(request)[: self._limits.max_prompt_chars],
            created_at=now,
            updated_at=now,
        )
        self._write_record(record)
        return record

    def record(self, job: str) -> JobRecord:
        """The job's status.json; `FileNotFoundError` for an unknown job."""
        data = json.loads((self._dir(job) / STATUS_FILE).read_text("utf-8"))
        return JobRecord(**data)

    def set_state(self, job: str, state: JobState, error: Error | None = None) -> JobRecord:
        """Move a job to `state`, recording the error of a failed or interrupted job."""
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
        self._write_record(record)
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
        write_atomic(self._dir(job) / PREVIEW_FILE, png, durable=False)

    def save_result(self, job: str, result: Result) -> None:
        """Store the job's result (its GLB files and result.json)."""
        self._write_message(self._dir(job), RESULT, result.to_wire())

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

    def list(self, limit: int) -> list[JobRecord]:
        """The newest `limit` jobs, newest first."""
        records = []
        for status_file in self._root.glob(f"*/{STATUS_FILE}"):
            try:
                records.append(self.record(status_file.parent.name))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable job folder %s: %s", status_file.parent, exc)
        records.sort(key=lambda record: record.created_at, reverse=True)
        return records[:limit]

    def _write_record(self, record: JobRecord) -> None:
        data = json.dumps(asdict(record), indent=1).encode("utf-8")
        write_atomic(self._dir(record.job) / STATUS_FILE, data)

    def _append(self, job: str, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with open(self._dir(job) / EVENTS_FILE, "a", encoding="utf-8") as handle:
            handle.write(line)

    def _write_message(self, folder: Path, stem: str, frames: list[bytes]) -> None:
        for index, blob in enumerate(frames[1:], start=1):
            write_atomic(folder / f"{stem}.{index}.{_extension(blob)}", blob)
        write_atomic(folder / f"{stem}.json", frames[0])

    def _read_message(self, job: str, stem: str, accepted: tuple[type[Message], ...]) -> Message:
        folder = self._dir(job)
        frames = [(folder / f"{stem}.json").read_bytes()]
        while True:
            found = sorted(folder.glob(f"{stem}.{len(frames)}.*"))
            if not found:
                break
            frames.append(found[0].read_bytes())
        return decode_message(frames, self._limits, accepted)
