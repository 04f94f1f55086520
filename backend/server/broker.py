"""The broker: clients on a ROUTER front end, workers on a private ROUTER back end, a FIFO
job queue.

This is the zguide load-balancing broker: workers announce READY, the broker hands the oldest
queued job to the longest-idle worker, and streams the worker's events back to the client
that follows the job (the one that submitted it, or the last one that fetched it). Every event
is written to the job store before it is forwarded; sends to clients never block (a slow or
vanished client loses events, never the others' time) and the result stays fetchable on disk.
One thread runs `Broker.run` and owns both sockets and the job store.

A worker that goes away in the middle of a job (its process killed) sends no more events, so
its job would wait forever. Every `WORKER_PROBE_INTERVAL_S` the broker sends each busy worker a
PROBE; the back end is a mandatory-routing ROUTER whose peers are dropped when their connection
ends, so a PROBE that cannot be routed means the worker has gone, and its job ends as
interrupted, with an error that says so. (The workers of a Ray pool are relays in the server's
process; a relay whose actor or host died says so with an interrupted error.)

A job whose worker went away is retried on another worker up to `retries` times (a Ray pool;
0 for local workers), with a warning to its client, and interrupted once they are spent. A Ray
pool's jobs outlive the front end (`keep_jobs`): a stop leaves queued and running jobs as they
are, and the next front end resumes the queue and re-attaches to the jobs still running.

A job store that cannot be written (disk full, read-only: `StorageError`) fails the job whose
result it cannot keep and refuses new jobs, with the cause; the lesser writes (event lines,
previews, the running state) are skipped with a warning, and the server goes on.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol

import zmq

from backend.server.jobstore import JobRecord, JobStore, StorageError
from backend.server.worker import CANCEL, EVENT, JOB, PROBE, READY
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import new_job_id
from protocol.messages import (
    REQUEST_TYPES,
    Accepted,
    Cancel,
    Cancelled,
    ComposeRequest,
    EditRequest,
    Error,
    FetchResult,
    GenerateRequest,
    Hello,
    JobList,
    JobRequest,
    JobState,
    JobStatus,
    JobWarning,
    ListJobs,
    Message,
    Preview,
    Progress,
    Result,
    ServerInfo,
    Status,
    check_supported,
    decode_message,
)

log = logging.getLogger("boxdream.server.broker")

WorkerKey = bytes
"""A worker: its routing id on the back end."""

WORKER_EVENT_TYPES = (Progress, Preview, JobWarning, Result, Error, Cancelled)
BATCH = 100
"""Messages read from one socket before looking at the other."""
WORKER_PROBE_INTERVAL_S = 1.0
"""How often busy workers are probed (module docstring)."""


@dataclass(frozen=True)
class Needs:
    """What a job asks of the worker that runs it."""

    model: str
    """The model it names, or the server's default."""
    method: str
    """Its score-distillation method."""
    preset: str
    """Its quality preset."""


class Placement(Protocol):
    """Which workers can run which jobs (a Ray pool's hosts, checkpoints and GPU memory)."""

    def refusal(self, needs: Needs) -> ProtocolError | None:
        """Why no worker can run a job with `needs` (naming the model or the memory), or None."""
        ...

    def fits(self, worker: str, needs: Needs) -> bool:
        """Whether worker `worker` (its READY name) can run a job with `needs`."""
        ...


class Delivery(enum.Enum):
    """What became of a message to a worker."""

    SENT = "sent"
    FULL = "full"
    """Its queue is full: the worker is there but not reading."""
    GONE = "gone"
    """The back end has no route to it: its connection has ended."""


@dataclass
class LiveJob:
    """A queued or running job, in memory."""

    record: JobRecord
    """Its status.json at acceptance."""
    client: bytes | None
    """Routing id of the client following it."""
    worker: WorkerKey | None = None
    """The worker running it."""
    stage: str | None = None
    """Stage of its last progress event."""
    step: int = 0
    """Step of its last progress event."""
    total: int = 0
    """Total of its last progress event."""
    needs: Needs | None = None
    """What it asks of its worker (for placement)."""
    retries: int = 0
    """Times it was started again after its worker went away."""


@dataclass
class WorkerSlot:
    """A worker the broker has heard from."""

    device: str
    """The device it runs on."""
    name: str
    """Its name, for logs."""
    job: str | None = None
    """The job it is running."""
    dispatched: int = 0
    """Jobs sent to it; a READY counting fewer was sent before the last one arrived."""


class Broker:
    """Routes requests, jobs and events; `run` it in one thread until `stop` is set."""

    def __init__(
        self,
        *,
        frontend: zmq.Socket,
        backend: zmq.Socket,
        store: JobStore,
        info: ServerInfo,
        max_queued: int,
        stop: threading.Event,
        placement: Placement | None = None,
        retries: int = 0,
        keep_jobs: bool = False,
        resumed: Iterable[JobRecord] = (),
    ) -> None:
        """`frontend` and `backend` (the workers') are bound ROUTER sockets handed over.

        `placement` says which worker may run which job (None: any); `retries`: how often a
        job whose worker went away starts again; `keep_jobs`: a stop leaves unfinished jobs
        to the next front end; `resumed`: jobs a previous front end left, queued ones to queue
        again and running ones for their worker to claim (READY with "job").
        """
        self._frontend = frontend
        self._backend = backend
        self._store = store
        self._info = info
        self._limits = info.limits
        self._max_queued = max_queued
        self._stop = stop
        self._queue: deque[str] = deque()
        self._live: dict[str, LiveJob] = {}
        self._workers: dict[WorkerKey, WorkerSlot] = {}
        self._idle: deque[WorkerKey] = deque()
        self._placement = placement
        self._retries = retries
        self._keep_jobs = keep_jobs
        for record in resumed:
            self._live[record.job] = LiveJob(record=record, client=None)
            if record.state == JobState.QUEUED:
                with contextlib.suppress(OSError, ProtocolError):  # `_dispatch` fails it
                    self._live[record.job].needs = self._needs(store.load_request(record.job))
                self._queue.append(record.job)

    def run(self) -> None:
        """The broker loop; on exit, unfinished jobs are marked interrupted."""
        poller = zmq.Poller()
        poller.register(self._frontend, zmq.POLLIN)
        poller.register(self._backend, zmq.POLLIN)
        next_probe = time.monotonic() + WORKER_PROBE_INTERVAL_S
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(100))
                if self._backend in ready:
                    self._drain(self._backend, self._on_worker)
                if self._frontend in ready:
                    self._drain(self._frontend, self._on_client)
                self._dispatch()
                if time.monotonic() >= next_probe:
                    self._probe_busy_workers()
                    next_probe = time.monotonic() + WORKER_PROBE_INTERVAL_S
        finally:
            self._interrupt_all()

    # --------------------------------------------------------------------------- clients

    def _drain(self, socket: zmq.Socket, handle: Callable[[list[bytes]], None]) -> None:
        for _ in range(BATCH):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            handle(frames)

    def _on_client(self, frames: list[bytes]) -> None:
        identity, body = frames[0], frames[1:]
        try:
            request = decode_message(body, self._limits, REQUEST_TYPES)
        except ProtocolError as error:
            self._send_client(identity, Error.of(error, limits=self._limits))
            return
        try:
            self._handle(identity, request)
        except ProtocolError as error:
            unknown = error.code == ErrorCode.UNKNOWN_JOB
            self._send_client(
                identity,
                Error.of(error, getattr(request, "job", None) if unknown else None, self._limits),
            )
        except Exception:
            log.exception("error while handling a %s request", request.TYPE)
            self._send_client(
                identity,
                Error(
                    code=ErrorCode.INTERNAL,
                    field="",
                    message="internal server error; the server log has the details",
                ),
            )

    def _handle(self, identity: bytes, request: Message) -> None:
        if isinstance(request, Hello):
            log.info("hello from %r", request.client)
            self._send_client(identity, self._info)
        elif isinstance(request, GenerateRequest | ComposeRequest | EditRequest):
            self._submit(identity, request)
        elif isinstance(request, Cancel):
            self._cancel(identity, request.job)
        elif isinstance(request, Status):
            self._send_client(identity, self._status(request.job))
        elif isinstance(request, FetchResult):
            self._fetch(identity, request.job)
        elif isinstance(request, ListJobs):
            records = self._store.list(request.limit)
            self._send_client(identity, JobList(jobs=[record.summary() for record in records]))

    def _needs(self, request: JobRequest) -> Needs:
        model = request.model or self._info.default_model
        return Needs(model=model, method=request.method, preset=request.preset)

    def _submit(self, identity: bytes, request: JobRequest) -> None:
        check_supported(request, self._info)
        needs = self._needs(request)
        refusal = None if self._placement is None else self._placement.refusal(needs)
        if refusal is not None:
            raise refusal
        job = request.job or new_job_id()
        if job in self._live:
            self._live[job].client = identity
        if self._store.exists(job) and not self._rerun(job):
            position = self._queue.index(job) if job in self._queue else 0
            self._send_client(identity, Accepted(job=job, queue_position=position))
            return
        if len(self._queue) >= self._max_queued:
            raise ProtocolError(
                ErrorCode.QUEUE_FULL,
                "",
                f"the queue is full ({self._max_queued} jobs); try again later",
            )
        record = self._store.create(replace(request, job=job))
        self._live[job] = LiveJob(record=record, client=identity, needs=needs)
        self._queue.append(job)
        log.info("job %s (%s) queued at position %d", job, record.kind, len(self._queue) - 1)
        self._send_client(identity, Accepted(job=job, queue_position=len(self._queue) - 1))

    def _rerun(self, job: str) -> bool:
        """Whether a submit of existing job `job` runs it again: an interrupted job does (its
        error says to submit it again); any other answers as before (idempotent submit)."""
        return job not in self._live and self._store.record(job).state == JobState.INTERRUPTED

    def _unknown(self, job: str) -> ProtocolError:
        return ProtocolError(ErrorCode.UNKNOWN_JOB, "job", f"job: no job {job} on this server")

    def _status(self, job: str) -> JobStatus:
        live = self._live.get(job)
        if live is not None:
            queued = job in self._queue
            return JobStatus(
                job=job,
                kind=live.record.kind,
                state=JobState.QUEUED if queued else JobState.RUNNING,
                queue_position=self._queue.index(job) if queued else None,
                stage=live.stage,
                step=live.step,
                total=live.total,
                created_at=live.record.created_at,
                updated_at=live.record.updated_at,
            )
        if not self._store.exists(job):
            raise self._unknown(job)
        record = self._store.record(job)
        return JobStatus(
            job=job,
            kind=record.kind,
            state=record.state,
            queue_position=None,
            stage=None,
            step=0,
            total=0,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )

    def _cancel(self, identity: bytes, job: str) -> None:
        live = self._live.get(job)
        if live is not None and job in self._queue:
            self._queue.remove(job)
            self._finish(job, JobState.CANCELLED, Cancelled(job=job))
        elif live is not None and live.worker is not None:
            log.info("cancelling job %s on worker %s", job, self._workers[live.worker].name)
            self._send_worker(live.worker, [CANCEL, job.encode()])
        self._send_client(identity, self._status(job))

    def _fetch(self, identity: bytes, job: str) -> None:
        live = self._live.get(job)
        if live is not None:
            live.client = identity
            self._send_client(identity, self._status(job))
            return
        if not self._store.exists(job):
            raise self._unknown(job)
        record = self._store.record(job)
        reply: Message
        if record.state == JobState.DONE:
            reply = self._store.load_result(job)
        elif record.state == JobState.CANCELLED:
            reply = Cancelled(job=job)
        else:
            reply = record.error_event()
        self._send_client(identity, reply)

    def _send_client(self, identity: bytes, message: Message) -> None:
        self._forward(identity, message.to_wire(), getattr(message, "job", None))

    def _forward(self, identity: bytes, frames: list[bytes], job: str | None) -> None:
        try:
            self._frontend.send_multipart([identity, *frames], flags=zmq.NOBLOCK)
        except zmq.Again:
            self._dropped(job, "its client is not reading (send queue full)")
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            self._dropped(job, "its client has gone")

    def _dropped(self, job: str | None, why: str) -> None:
        log.info("dropped an event of job %s: %s", job, why)
        if job is not None and self._store.exists(job):
            message = f"event not delivered: {why}; the result stays fetchable"
            self._best_effort(job, self._store.log, job, message)

    # --------------------------------------------------------------------------- workers

    def _on_worker(self, frames: list[bytes]) -> None:
        key, command, body = frames[0], frames[1:2], frames[2:]
        try:
            if command == [READY]:
                self._worker_ready(key, body)
            elif command == [EVENT]:
                self._worker_event(key, body)
            else:
                log.warning("dropped a message with an unknown command from a worker")
        except ProtocolError as error:
            log.warning("dropped a bad message from a worker: %s", error.message)
        except Exception:
            log.exception("error while handling a worker message")

    def _worker_ready(self, key: WorkerKey, body: list[bytes]) -> None:
        try:
            details = json.loads(body[0])
            device, name, taken = str(details["device"]), str(details["name"]), int(details["jobs"])
        except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
            log.warning("dropped a READY with bad details")
            return
        slot = self._workers.get(key)
        if slot is None:
            slot = self._workers[key] = WorkerSlot(device=device, name=name)
            log.info("worker %s on %s is ready", name, device)
        running = details.get("job") if isinstance(details, dict) else None
        if isinstance(running, str):
            self._claim(key, slot, running)
            return
        if taken < slot.dispatched:
            return
        if slot.job is not None:
            lost = slot.job
            slot.job = None
            log.error("worker %s lost job %s", slot.name, lost)
            self._finish(
                lost,
                JobState.FAILED,
                Error(
                    code=ErrorCode.INTERNAL,
                    field="",
                    message=f"internal error: worker {slot.name} lost the job",
                    job=lost,
                ),
            )
        if key not in self._idle:
            self._idle.append(key)

    def _claim(self, key: WorkerKey, slot: WorkerSlot, job: str) -> None:
        """A worker says it runs `job`, started for a previous front end: follow it."""
        live = self._live.get(job)
        if live is None or live.worker is not None or job in self._queue or slot.job is not None:
            log.warning("worker %s claims job %s, which is not waiting for it", slot.name, job)
            return
        slot.job, live.worker = job, key
        log.info("job %s re-attached on worker %s (%s)", job, slot.name, slot.device)

    def _worker_event(self, key: WorkerKey, body: list[bytes]) -> None:
        slot = self._workers.get(key)
        event = decode_message(body, self._limits, WORKER_EVENT_TYPES)
        job = getattr(event, "job", None)
        if slot is None or job is None or slot.job != job or job not in self._live:
            log.warning("dropped an event for job %s that this worker does not run", job)
            return
        live = self._live[job]
        if isinstance(event, Progress):
            live.stage, live.step, live.total = event.stage, event.step, event.total
        elif isinstance(event, Preview):
            self._best_effort(job, self._store.save_preview, job, event.png)
        elif isinstance(event, Result):
            slot.job = None
            try:
                self._store.commit_result(job, event, body)
            except StorageError as error:
                log.error("job %s failed: %s", job, error.message)
                self._finish(job, JobState.FAILED, Error.of(error, job, self._limits))
                return
            self._end(job, JobState.DONE, body)
            return
        elif isinstance(event, Error) and event.code == ErrorCode.INTERRUPTED:
            slot.job = None
            self._lost(job, event.message)
            return
        elif isinstance(event, Error | Cancelled):
            slot.job = None
            state = JobState.FAILED if isinstance(event, Error) else JobState.CANCELLED
            self._finish(job, state, event, body)
            return
        self._best_effort(job, self._store.append_event, job, body)
        self._forward_event(job, body)

    def _best_effort(self, job: str, write: Callable[..., None], *args: object) -> None:
        """Write something the job can do without (an event line, a preview): a storage
        error is logged, and the job goes on."""
        try:
            write(*args)
        except StorageError as error:
            log.warning("job %s: %s", job, error.message)

    def _forward_event(self, job: str, frames: list[bytes]) -> None:
        live = self._live.get(job)
        if live is not None and live.client is not None:
            self._forward(live.client, frames, job)

    def _finish(
        self,
        job: str,
        state: JobState,
        event: Error | Cancelled,
        frames: list[bytes] | None = None,
    ) -> None:
        """Record a job's last event and end state, tell its client, forget it. A state
        the store cannot write is kept in its memory (`JobStore.set_state`)."""
        frames = frames or event.to_wire()
        self._best_effort(job, self._store.append_event, job, frames)
        self._best_effort(
            job, self._store.set_state, job, state, event if isinstance(event, Error) else None
        )
        self._end(job, state, frames)

    def _end(self, job: str, state: JobState, frames: list[bytes]) -> None:
        """Tell the client of a job that ended (its recorded last event) and forget it."""
        log.info("job %s %s", job, state)
        self._forward_event(job, frames)
        self._live.pop(job, None)

    def _send_worker(self, key: WorkerKey, frames: list[bytes]) -> Delivery:
        try:
            self._backend.send_multipart([key, *frames], flags=zmq.NOBLOCK)
        except zmq.Again:
            return Delivery.FULL
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            return Delivery.GONE
        return Delivery.SENT

    def _probe_busy_workers(self) -> None:
        """End the jobs of busy workers the back end can no longer reach (module docstring)."""
        for key, slot in list(self._workers.items()):
            if slot.job is None or self._send_worker(key, [PROBE]) is not Delivery.GONE:
                continue
            job = slot.job
            del self._workers[key]
            log.error("worker %s (%s) went away while running job %s", slot.name, slot.device, job)
            self._lost(
                job,
                f"job {job} was interrupted: worker {slot.name} ({slot.device}) went away while "
                "running it (its process ended)",
            )

    def _lost(self, job: str, why: str) -> None:
        """A job whose worker went away (`why`): queued again at the front while retries are
        left, with a warning to its client; else interrupted."""
        live = self._live.get(job)
        if live is None:
            return
        if live.retries >= self._retries:
            plural = "y" if live.retries == 1 else "ies"
            retried = f" after {live.retries} retr{plural}" if live.retries else ""
            message = f"{why}{retried}; submit it again"[: self._limits.max_text_chars]
            error = Error(code=ErrorCode.INTERRUPTED, field="job", message=message, job=job)
            self._finish(job, JobState.INTERRUPTED, error)
            return
        live.retries += 1
        live.worker, live.stage, live.step, live.total = None, None, 0, 0
        self._queue.appendleft(job)
        note = f"{why}; running it again (retry {live.retries} of {self._retries})"
        log.warning("job %s: %s", job, note)
        warning = JobWarning(message=note[: self._limits.max_text_chars], job=job)
        self._best_effort(job, self._store.set_state, job, JobState.QUEUED)
        self._best_effort(job, self._store.append_event, job, warning.to_wire())
        self._forward_event(job, warning.to_wire())

    def _next_job(self, slot: WorkerSlot) -> str | None:
        """The oldest queued job worker `slot` can run."""
        for job in self._queue:
            needs = self._live[job].needs
            if self._placement is None or needs is None or self._placement.fits(slot.name, needs):
                return job
        return None

    def _dispatch(self) -> None:
        skipped: list[WorkerKey] = []
        while self._queue and self._idle:
            key = self._idle.popleft()
            slot = self._workers[key]
            found = self._next_job(slot)
            if found is None:
                skipped.append(key)
                continue
            job = found
            try:
                request = self._store.load_request(job)
            except (OSError, ProtocolError) as exc:
                self._queue.remove(job)
                log.exception("could not load job %s", job)
                message = f"internal error: could not load the stored request: {exc}"
                self._finish(job, JobState.FAILED, Error(ErrorCode.INTERNAL, "", message, job))
                self._idle.appendleft(key)
                continue
            if self._send_worker(key, [JOB, *request.to_wire()]) is not Delivery.SENT:
                log.warning("worker %s is unreachable; forgetting it", slot.name)
                del self._workers[key]
                continue
            self._queue.remove(job)
            slot.job = job
            slot.dispatched += 1
            self._live[job].worker = key
            try:
                self._live[job].record = self._store.set_state(job, JobState.RUNNING)
            except StorageError as error:
                log.warning("job %s: %s", job, error.message)
            log.info("job %s started on worker %s (%s)", job, slot.name, slot.device)
            self._best_effort(job, self._store.log, job, f"on worker {slot.name} ({slot.device})")
        self._idle.extendleft(reversed(skipped))

    def _interrupt_all(self) -> None:
        """On shutdown: every queued or running job is interrupted, and their clients told;
        with `keep_jobs` they are left to the next front end."""
        if self._keep_jobs:
            if self._live:
                log.info("%d unfinished jobs left for the next front end", len(self._live))
            self._live.clear()
            self._queue.clear()
            return
        for job in list(self._live):
            error = Error(
                code=ErrorCode.INTERRUPTED,
                field="job",
                message=f"job {job} was interrupted: the server stopped before it finished; "
                "submit it again",
                job=job,
            )
            self._finish(job, JobState.INTERRUPTED, error)
        self._queue.clear()
