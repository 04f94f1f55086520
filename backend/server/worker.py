"""A worker: runs jobs through a pipeline on one device and streams their events back.

Workers speak to the broker's private back end (a ROUTER) through a DEALER socket, in the
zguide load-balancing pattern, as threads next to the broker (inproc) or as local processes
(ipc in a 0700 folder); a Ray pool's relays (`backend.server.raypool`) are workers too.
Frames between broker and worker:

    worker → broker   READY, {"device", "name", "jobs"}      ready for a job (repeated while idle;
                                                             "jobs" counts the JOBs received; a
                                                             relay adds "job" to re-attach)
                      EVENT, <event message frames>          one event of the current job
    broker → worker   JOB, <request message frames>          run this job
                      CANCEL, <job id>                       stop this job at the next step
                      PROBE                                  none (the broker checks that it can
                                                             still route to a busy worker)
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import zmq

from backend.server.lifeline import watch_parent
from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import Limits
from protocol.messages import (
    JOB_REQUEST_TYPES,
    Cancelled,
    Error,
    JobRequest,
    JobWarning,
    Message,
    PipelineEvent,
    Preview,
    Progress,
    Result,
    decode_message,
)

log = logging.getLogger("boxdream.server.worker")

READY = b"READY"
JOB = b"JOB"
CANCEL = b"CANCEL"
PROBE = b"PROBE"
EVENT = b"EVENT"

READY_INTERVAL_S = 1.0
"""An idle worker repeats READY this often, so a restarted broker learns of it."""

PIPELINE_EVENT_TYPES = (Progress, Preview, JobWarning, Result)


class Pipeline(Protocol):
    """The callable that runs a job (`backend.pipelines.runner.run_job`)."""

    def __call__(
        self,
        request: JobRequest,
        *,
        device: str,
        model: str | None,
        should_cancel: Callable[[], bool],
    ) -> Iterator[PipelineEvent]:
        """Yield progress, previews and warnings, then one `Result`.

        Raise on cancel (when `should_cancel()` is true) and `ProtocolError` for bad input.
        """
        ...


def send_frames(socket: zmq.Socket, frames: list[bytes], stop: threading.Event) -> None:
    """Send to the broker, waiting while it is busy or away, until `stop` is set."""
    while not stop.is_set():
        try:
            socket.send_multipart(frames, flags=zmq.NOBLOCK)
            return
        except zmq.Again:
            socket.poll(100, zmq.POLLOUT)
    log.info("not sent: the worker is stopping")


class Worker:
    """Runs one job at a time on `device`, for the broker at `address`."""

    def __init__(
        self,
        *,
        address: str,
        device: str,
        pipeline: Pipeline,
        model: str | None = None,
        limits: Limits | None = None,
        context: zmq.Context | None = None,
        name: str = "",
    ) -> None:
        """`model` is used for requests that name none (None: the pipeline's default)."""
        self._address = address
        self._device = device
        self._pipeline = pipeline
        self._model = model
        self._limits = limits or Limits()
        self._context = context or zmq.Context.instance()
        self._name = name or f"{device}-worker"

    @property
    def device(self) -> str:
        """The device this worker runs jobs on."""
        return self._device

    def _ready(self, jobs_taken: int, job: str | None = None) -> list[bytes]:
        """A READY message; `job`: the job this worker already runs (a re-attach)."""
        details: dict[str, object] = {"device": self._device, "name": self._name}
        details.update(jobs=jobs_taken, **({} if job is None else {"job": job}))
        return [READY, json.dumps(details).encode()]

    @property
    def serving(self) -> bool:
        """Whether this worker can still run jobs (a Ray worker whose actor died cannot)."""
        return True

    def _resume(self, socket: zmq.Socket, stop: threading.Event) -> None:
        """Before the first READY: relay a job already running (a Ray worker's, after a
        front-end restart). A local worker has none."""

    def run(self, stop: threading.Event) -> None:
        """Serve jobs until `stop` is set. Creates and closes its own socket (own thread)."""
        socket = self._context.socket(zmq.DEALER)
        socket.linger = 0
        socket.connect(self._address)
        jobs_taken = 0

        def ready() -> list[bytes]:
            return self._ready(jobs_taken)

        try:
            self._resume(socket, stop)
            send_frames(socket, ready(), stop)
            last_ready = time.monotonic()
            while not stop.is_set() and self.serving:
                if time.monotonic() - last_ready >= READY_INTERVAL_S:
                    send_frames(socket, ready(), stop)
                    last_ready = time.monotonic()
                if not socket.poll(100, zmq.POLLIN):
                    continue
                frames = socket.recv_multipart()
                if frames[0] == JOB:
                    jobs_taken += 1
                    self._run_job(socket, frames[1:], stop)
                    if not stop.is_set():
                        send_frames(socket, ready(), stop)
                        last_ready = time.monotonic()
                elif frames[0] not in (CANCEL, PROBE):
                    log.warning("%s: ignoring an unknown command from the broker", self._name)
        except zmq.ContextTerminated:
            log.info("%s: the server's context ended; stopping", self._name)
        finally:
            socket.close(linger=0)

    def _run_job(self, socket: zmq.Socket, frames: list[bytes], stop: threading.Event) -> None:
        try:
            request = decode_message(frames, self._limits, JOB_REQUEST_TYPES)
        except ProtocolError as error:
            log.error("%s: the broker sent a bad job: %s", self._name, error.message)
            return
        assert isinstance(request, JobRequest) and request.job is not None
        log.info("%s: job %s (%s) started", self._name, request.job, request.TYPE)
        self._send_events(
            socket,
            request.job,
            lambda cancelled: self._events(request, cancelled, stop.is_set),
            stop,
        )

    def _send_events(
        self,
        socket: zmq.Socket,
        job: str,
        events: Callable[[Callable[[], bool]], Iterator[Message]],
        stop: threading.Event,
    ) -> None:
        """Send the events of `job` to the broker; `events(cancelled)` makes them, where
        `cancelled()` says whether the broker has asked to cancel the job."""
        cancel_requested = False

        def cancelled() -> bool:
            nonlocal cancel_requested
            while socket.poll(0, zmq.POLLIN):
                command = socket.recv_multipart()
                if command[0] == CANCEL and command[1:] == [job.encode()]:
                    cancel_requested = True
            return cancel_requested

        for event in events(cancelled):
            send_frames(socket, [EVENT, *event.to_wire()], stop)

    def _events(
        self,
        request: JobRequest,
        cancelled: Callable[[], bool],
        stopping: Callable[[], bool],
    ) -> Iterator[Message]:
        """The events of one job, to send to the broker as they come."""
        return pipeline_events(
            self._pipeline,
            request,
            device=self._device,
            model=request.model or self._model,
            cancelled=cancelled,
            stopping=stopping,
            limits=self._limits,
            name=self._name,
        )


def pipeline_events(
    pipeline: Pipeline,
    request: JobRequest,
    *,
    device: str,
    model: str | None,
    cancelled: Callable[[], bool],
    stopping: Callable[[], bool],
    limits: Limits,
    name: str,
) -> Iterator[Message]:
    """Run one job through `pipeline`: its checked events, then its `Result`, or one `Error`
    or `Cancelled` to end it; nothing more once `stopping()` (a shutdown: no one to tell)."""
    assert request.job is not None
    job = request.job

    def should_cancel() -> bool:
        return cancelled() or stopping()

    events = pipeline(request, device=device, model=model, should_cancel=should_cancel)
    try:
        for event in events:
            yield checked_event(event, job, limits)
            if isinstance(event, Result):
                log.info("%s: job %s done", name, job)
                return
            if should_cancel():
                break
    except ProtocolError as error:
        if not should_cancel():
            yield Error.of(error, job, limits)
            return
    except Exception as exc:
        if not should_cancel():
            log.exception("%s: job %s failed", name, job)
            message = f"internal error in the pipeline: {type(exc).__name__}: {exc}"
            yield Error(
                code=ErrorCode.INTERNAL,
                field="",
                message=message[: limits.max_text_chars],
                job=job,
            )
            return
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    if stopping():
        log.info("%s: job %s interrupted by shutdown", name, job)
    elif cancelled():
        log.info("%s: job %s cancelled", name, job)
        yield Cancelled(job=job)
    else:
        yield Error(
            code=ErrorCode.INTERNAL,
            field="",
            message="internal error: the pipeline ended without a result",
            job=job,
        )


def checked_event(event: object, job: str, limits: Limits) -> Message:
    """The event with its job id set, validated as a receiver would; else a `ProtocolError`."""
    if not isinstance(event, PIPELINE_EVENT_TYPES):
        raise ProtocolError(
            ErrorCode.INTERNAL,
            "",
            f"internal error: the pipeline yielded a {type(event).__name__}, "
            "not a Progress, Preview, JobWarning or Result",
        )
    event = replace(event, job=job)
    try:
        decode_message(event.to_wire(), limits, (type(event),))
    except ProtocolError as error:
        raise ProtocolError(
            ErrorCode.INTERNAL,
            error.field,
            f"internal error: the pipeline produced an invalid {event.TYPE} event: {error.message}",
        ) from error
    return event


def run_worker_process(
    address: str,
    device: str,
    pipeline: Pipeline,
    model: str | None,
    limits: Limits,
    *,
    name: str,
    parent_pid: int,
    endpoint: Path | None,
) -> None:
    """Entry point of a worker process started by the server (`parent_pid`, whose endpoint
    folder is `endpoint`): serve until SIGTERM, or exit when the server has gone."""
    logging.basicConfig(level=logging.INFO, format="boxdream: %(message)s", stream=sys.stderr)
    stop = threading.Event()
    watch_parent(parent_pid, stop, endpoint)
    context = zmq.Context()
    worker = Worker(
        address=address,
        device=device,
        pipeline=pipeline,
        model=model,
        limits=limits,
        context=context,
        name=name,
    )
    try:
        worker.run(stop)
    finally:
        context.term()
