"""The ZeroMQ client: connect, submit, poll or wait for events, cancel, fetch results.

One DEALER socket per `Client`. A `Client` may live in any thread, but only one thread may use
it at a time (ZeroMQ sockets are not thread-safe): give each thread its own `Client`.

Replies: the server answers the requests of one connection in the order they were sent, while
job events stream in between. The client keeps its outstanding requests in a FIFO and matches
each incoming message against the oldest one, so a reply is never confused with an event or
with the reply to an earlier heartbeat.

Liveness: while jobs are in flight the client sends a `Status` request for each of them every
`heartbeat_s`; any message from the server counts as a sign of life. After `timeout_s` of
silence it reconnects with a new socket (Lazy Pirate) and re-attaches its jobs with
`FetchResult`; after `retries` reconnects without an answer it raises `ServerUnreachable`.
Every request is idempotent (a submit carries a client-chosen job id), so each is retried the
same way.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import zmq

from .curve import CurveKeys
from .errors import ErrorCode, ProtocolError, ServerUnreachable
from .frames import new_job_id
from .limits import Limits
from .messages import (
    DEFAULT_LIMITS,
    EVENT_TYPES,
    JOB_REQUEST_TYPES,
    REPLY_TYPES,
    Accepted,
    Cancel,
    Cancelled,
    Error,
    Event,
    FetchResult,
    Hello,
    JobList,
    JobRequest,
    JobStatus,
    JobSummary,
    ListJobs,
    Message,
    Result,
    ServerInfo,
    Status,
    check_supported,
    decode_message,
    validate,
)
from .version import PROTOCOL_VERSION

log = logging.getLogger("boxdream.client")

TERMINAL_EVENTS = (Result, Error, Cancelled)
JOB_REQUEST_NAMES = frozenset(cls.TYPE for cls in JOB_REQUEST_TYPES)


def cancelled_error(job: str) -> ProtocolError:
    """The error `wait` and `fetch_result` raise for a cancelled job."""
    return ProtocolError(ErrorCode.CANCELLED, "job", f"job {job} was cancelled")


@dataclass(frozen=True)
class _Pending:
    """A request sent on the current socket whose reply has not arrived yet."""

    token: int
    type: str
    job: str | None

    def answered_by(self, message: Message) -> bool:
        """Whether `message` is the server's direct reply to this request."""
        job = getattr(message, "job", None)
        if isinstance(message, Error) and job is None:
            return True
        if self.type == Hello.TYPE:
            return isinstance(message, ServerInfo)
        if self.type == ListJobs.TYPE:
            return isinstance(message, JobList)
        if job != self.job:
            return False
        if self.type in JOB_REQUEST_NAMES:
            return isinstance(message, Accepted)
        if self.type == FetchResult.TYPE:
            return isinstance(message, JobStatus | Result | Cancelled | Error)
        return isinstance(message, JobStatus) or (
            isinstance(message, Error) and message.code == ErrorCode.UNKNOWN_JOB
        )


class Client:
    """A connection to a BoxDream server at `address` (e.g. "tcp://127.0.0.1:5555")."""

    def __init__(
        self,
        address: str,
        *,
        curve: CurveKeys | None = None,
        timeout_s: float = 2.0,
        heartbeat_s: float = 1.0,
        retries: int = 2,
        client_name: str = "boxdream-client",
        context: zmq.Context | None = None,
    ) -> None:
        """`timeout_s`: silence before a reconnect; `retries`: reconnects before giving up."""
        self._address = address
        self._curve = curve
        self._timeout_s = timeout_s
        self._heartbeat_s = heartbeat_s
        self._retries = retries
        self._client_name = client_name
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self._info: ServerInfo | None = None
        self._events: deque[Event] = deque()
        self._active: set[str] = set()
        self._ended: set[str] = set()
        self._outstanding: deque[_Pending] = deque()
        self._tokens = itertools.count(1)
        self._last_heard = time.monotonic()
        self._last_heartbeat = 0.0
        self._misses = 0

    @property
    def address(self) -> str:
        """The server address this client talks to."""
        return self._address

    @property
    def info(self) -> ServerInfo | None:
        """The server's hello reply, once `hello` (or `submit`) has run."""
        return self._info

    @property
    def _limits(self) -> Limits:
        """The server's limits once known, else the defaults."""
        return self._info.limits if self._info is not None else DEFAULT_LIMITS

    @property
    def active_jobs(self) -> frozenset[str]:
        """Jobs this client follows that have not ended yet."""
        return frozenset(self._active)

    # ------------------------------------------------------------------ public requests

    def hello(self) -> ServerInfo:
        """Ask the server what it offers; checks the protocol version."""
        reply = self._call(Hello(client=self._client_name))
        if isinstance(reply, Error):
            raise reply.exception()
        assert isinstance(reply, ServerInfo)
        if reply.protocol_version != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.BAD_VERSION,
                "protocol_version",
                f"protocol_version: server speaks {reply.protocol_version}, "
                f"this client {PROTOCOL_VERSION}",
            )
        self._info = reply
        return reply

    def submit(self, request: JobRequest) -> str:
        """Validate `request` against the server's limits and offer, send it, return its job id.

        Raises `ProtocolError` if this client or the server rejects it.
        """
        info = self._info or self.hello()
        validate(request, info.limits)
        check_supported(request, info)
        job = request.job or new_job_id()
        reply = self._call(replace(request, job=job))
        if isinstance(reply, Error):
            raise reply.exception()
        assert isinstance(reply, Accepted)
        self._active.add(job)
        self._ended.discard(job)
        self._events.append(reply)
        return job

    def cancel(self, job_id: str) -> JobStatus:
        """Ask the server to cancel a job; its `Cancelled` event follows when it stops."""
        return self._job_status(Cancel(job=job_id))

    def status(self, job_id: str) -> JobStatus:
        """Where a job is: queued, running, done, failed, cancelled or interrupted."""
        return self._job_status(Status(job=job_id))

    def fetch_result(self, job_id: str) -> Result | None:
        """The result of a finished job, or None if it is still queued or running.

        For an unfinished job this client is attached to it: its events arrive via `poll` and
        `wait`. Raises `ProtocolError` for a failed, cancelled, interrupted or unknown job.
        """
        reply = self._call(FetchResult(job=job_id))
        if isinstance(reply, JobStatus):
            self._active.add(job_id)
            self._ended.discard(job_id)
            return None
        self._active.discard(job_id)
        if isinstance(reply, Error):
            raise reply.exception()
        if isinstance(reply, Cancelled):
            raise cancelled_error(job_id)
        assert isinstance(reply, Result)
        return reply

    def list_jobs(self, limit: int = 50) -> list[JobSummary]:
        """The newest jobs on the server, newest first."""
        reply = self._call(ListJobs(limit=limit))
        if isinstance(reply, Error):
            raise reply.exception()
        assert isinstance(reply, JobList)
        return reply.jobs

    def poll(self, timeout_ms: int = 0) -> list[Event]:
        """Events received so far, waiting at most `timeout_ms` for the first one.

        With `timeout_ms=0` it never blocks: call it from a GUI timer. Also sends heartbeats
        and raises `ServerUnreachable` when the server has gone silent.
        """
        self._pump(timeout_ms)
        events = list(self._events)
        self._events.clear()
        return events

    def wait(
        self,
        job_id: str,
        on_event: Callable[[Event], None] | None = None,
        timeout_s: float | None = None,
    ) -> Result:
        """Block until `job_id` ends; return its `Result`, calling `on_event` for each event.

        Raises `ProtocolError` if the job failed (its error), was cancelled (code "cancelled")
        or was interrupted; `ServerUnreachable` if the server goes silent; `TimeoutError`
        after `timeout_s`. Events of other jobs stay queued for `poll`.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if job_id not in self._active and not any(e.job == job_id for e in self._events):
            result = self.fetch_result(job_id)
            if result is not None:
                if on_event is not None:
                    on_event(result)
                return result
        while True:
            for event in self._take_events(job_id):
                if on_event is not None:
                    on_event(event)
                if isinstance(event, Result):
                    return event
                if isinstance(event, Error):
                    raise event.exception()
                if isinstance(event, Cancelled):
                    raise cancelled_error(job_id)
            wait_s = self._heartbeat_s
            if deadline is not None:
                wait_s = min(wait_s, deadline - time.monotonic())
                if wait_s <= 0:
                    raise TimeoutError(f"job {job_id} did not finish within {timeout_s:g} s")
            self._pump(int(wait_s * 1000) + 1)

    def close(self) -> None:
        """Close the socket; pending sends are dropped."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        self._outstanding.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------------- machinery

    def _job_status(self, request: Cancel | Status) -> JobStatus:
        reply = self._call(request)
        if isinstance(reply, Error):
            raise reply.exception()
        assert isinstance(reply, JobStatus)
        return reply

    def _take_events(self, job_id: str) -> list[Event]:
        taken = [event for event in self._events if event.job == job_id]
        if taken:
            self._events = deque(event for event in self._events if event.job != job_id)
        return taken

    def _connect(self) -> zmq.Socket:
        socket = self._context.socket(zmq.DEALER)
        socket.linger = 0
        if self._curve is not None:
            self._curve.apply(socket)
        socket.connect(self._address)
        self._socket = socket
        return socket

    def _reconnect(self) -> None:
        """Lazy Pirate: a fresh socket, then re-attach to every job in flight."""
        log.info("no answer from %s; reconnecting", self._address)
        self.close()
        self._connect()
        for job in sorted(self._active):
            self._send(FetchResult(job=job))

    def _send(self, message: Message) -> int:
        """Send a request; return the token its reply will carry.

        Raises `ProtocolError` for a request over the server's max_message_bytes: the server
        would drop it without an answer (PROTOCOL.md, Limits).
        """
        frames = message.to_wire()
        size, limit = sum(map(len, frames)), self._limits.max_message_bytes
        if size > limit:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                "message",
                f"message: {size} bytes, limit is {limit} (max_message_bytes; the server "
                "drops a larger message without an answer)",
            )
        socket = self._socket or self._connect()
        token = next(self._tokens)
        try:
            socket.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            log.info("send queue to %s is full; the liveness timer will retry", self._address)
            return token
        self._outstanding.append(_Pending(token, message.TYPE, getattr(message, "job", None)))
        return token

    def _receive(self, timeout_ms: float) -> tuple[Message, int | None] | None:
        """One decoded message and the token of the request it answers (None for events)."""
        socket = self._socket or self._connect()
        if not socket.poll(max(int(timeout_ms), 0), zmq.POLLIN):
            return None
        frames = socket.recv_multipart()
        self._last_heard = time.monotonic()
        self._misses = 0
        try:
            message = decode_message(frames, self._limits, REPLY_TYPES)
        except ProtocolError as error:
            if error.code == ErrorCode.BAD_VERSION:
                raise
            log.warning("dropped a message from %s: %s", self._address, error.message)
            return None
        if self._outstanding and self._outstanding[0].answered_by(message):
            return message, self._outstanding.popleft().token
        return message, None

    def _absorb(self, message: Message) -> None:
        """File an event, or the reply to one of the client's own heartbeats or re-attaches."""
        if isinstance(message, JobStatus):
            if message.job in self._active and message.finished:
                self._send(FetchResult(job=message.job))
            return
        if isinstance(message, EVENT_TYPES):
            event: Event = message  # type: ignore[assignment]
            if event.job is None:
                log.warning("dropped an error about no job from %s: %s", self._address, event)
                return
            if event.job in self._ended and isinstance(event, TERMINAL_EVENTS):
                return
            if isinstance(event, TERMINAL_EVENTS) and event.job is not None:
                self._active.discard(event.job)
                self._ended.add(event.job)
            self._events.append(event)

    def _pump(self, timeout_ms: int) -> None:
        """Heartbeat, then receive everything available (waiting up to `timeout_ms`)."""
        self._heartbeat()
        received = self._receive(timeout_ms)
        while received is not None or (self._socket and self._socket.poll(0, zmq.POLLIN)):
            if received is not None:
                self._absorb(received[0])
            received = self._receive(0)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if not self._active:
            self._last_heard = now
            return
        if now - self._last_heard > self._timeout_s:
            if self._misses >= self._retries:
                raise self._unreachable(self._misses + 1)
            self._misses += 1
            self._reconnect()
            self._last_heard = now
            self._last_heartbeat = now
            return
        if now - self._last_heartbeat >= self._heartbeat_s:
            self._last_heartbeat = now
            waiting = {pending.job for pending in self._outstanding}
            for job in sorted(self._active - waiting):
                self._send(Status(job=job))

    def _call(self, request: Message) -> Message:
        """Send `request` and return the server's reply to it (Lazy Pirate retries)."""
        for attempt in range(self._retries + 1):
            if attempt:
                self._reconnect()
            token = self._send(request)
            deadline = time.monotonic() + self._timeout_s
            while (remaining := deadline - time.monotonic()) > 0:
                received = self._receive(remaining * 1000)
                if received is None:
                    continue
                message, answered = received
                if answered == token:
                    return message
                self._absorb(message)
        raise self._unreachable(self._retries + 1)

    def _unreachable(self, attempts: int) -> ServerUnreachable:
        return ServerUnreachable(
            self._address,
            f"no answer from the BoxDream server at {self._address} "
            f"within {attempts * self._timeout_s:.1f} s ({attempts} attempts); "
            "is `boxdream serve` running there, and are the CURVE keys right?",
        )
