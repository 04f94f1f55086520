"""The add-on's I/O thread: it owns the ZeroMQ client, runs the main thread's commands and
reports what it hears as notices. No bpy here (the main thread applies the notices in
`session.py`), so it is tested without Blender.

    main thread (operators, timer)          I/O thread (owns the `protocol.client.Client`)
      Connect / Submit / Cancel / Refetch  ───►  hello, submit, cancel, fetch_result
      drain(): jobs, previews, imports     ◄───  Connected, ConnectionLost, JobEvent, JobFailed

When the server goes silent the thread reports it within the client's timeout x retries,
marks the followed jobs "waiting", and retries `hello` every `reconnect_s`; once the server
answers it re-attaches to each job with `fetch_result`, so jobs resume where they are.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, replace

from .protocol.client import Client
from .protocol.curve import CurveKeys
from .protocol.errors import ProtocolError, ServerUnreachable
from .protocol.messages import (
    Cancelled,
    Error,
    Event,
    JobRequest,
    Result,
    ServerInfo,
)

log = logging.getLogger("boxdream.addon")

CLIENT_NAME = "boxdream-blender"
POLL_MS = 50
"""How long the I/O thread waits for server events between looks at its command queue."""


@dataclass(frozen=True)
class ConnectionConfig:
    """Where and how to connect, read from the preferences on the main thread."""

    address: str
    """ZeroMQ address of the server."""
    curve: CurveKeys | None
    """CURVE keys, or None for a plain connection."""
    timeout_s: float
    """Silence before a reconnect."""
    heartbeat_s: float
    """Status requests interval while jobs run."""
    retries: int
    """Reconnects before the server counts as unreachable."""
    reconnect_s: float
    """Interval between attempts to reach a server that went away."""


class ConnectionBlocked(Exception):
    """The preferences forbid or cannot make this connection (online access, CURVE keys)."""


# ------------------------------------------------------------------ main -> I/O commands


@dataclass(frozen=True)
class Connect:
    """(Re)connect with this configuration and say hello."""

    config: ConnectionConfig


@dataclass(frozen=True)
class Submit:
    """Send a job request (its job id already chosen by the add-on)."""

    request: JobRequest


@dataclass(frozen=True)
class CancelJob:
    """Ask the server to cancel a job."""

    job: str


@dataclass(frozen=True)
class Refetch:
    """Re-attach to jobs: results of finished ones, events of running ones."""

    jobs: tuple[str, ...]
    force: bool = True
    """Also fetch jobs the thread already follows (False: only the ones it does not)."""


Command = Connect | Submit | CancelJob | Refetch


# ------------------------------------------------------------------ I/O -> main notices


@dataclass(frozen=True)
class Connected:
    """The server answered hello."""

    info: ServerInfo


@dataclass(frozen=True)
class ConnectionLost:
    """The server could not be reached (or refused the hello); `message` says why."""

    message: str


@dataclass(frozen=True)
class JobEvent:
    """A protocol event of a job: accepted, progress, preview, warning, result, error..."""

    event: Event


@dataclass(frozen=True)
class JobFailed:
    """A job could not be submitted, cancelled or re-fetched; `message` says why."""

    job: str
    message: str


@dataclass(frozen=True)
class JobMessage:
    """Something to tell about a job that does not change its state (a failed cancel)."""

    job: str
    message: str


@dataclass(frozen=True)
class JobWaiting:
    """A job's server went silent; the job resumes when it answers again."""

    job: str
    message: str


Notice = Connected | ConnectionLost | JobEvent | JobFailed | JobMessage | JobWaiting


@dataclass
class ConnectionState:
    """What the panel shows about the connection (main thread only)."""

    status: str = "disconnected"
    """disconnected, connecting, connected, unreachable or blocked."""
    message: str = ""
    """Why it is unreachable or blocked, verbatim."""
    address: str = ""
    """The address last used."""
    info: ServerInfo | None = None
    """The server's hello reply while connected."""


class IOThread(threading.Thread):
    """Owns the client socket: runs commands, polls events, reconnects after an outage."""

    def __init__(self, commands: queue.Queue[Command | None], notices: queue.Queue[Notice]):
        super().__init__(name="boxdream-io", daemon=True)
        self._commands = commands
        self._notices = notices
        self._client: Client | None = None
        self._config: ConnectionConfig | None = None
        self._followed: set[str] = set()
        self._down = False
        self._why = "not connected yet"
        self._last_attempt = 0.0

    def run(self) -> None:
        while True:
            try:
                command = self._commands.get(timeout=POLL_MS / 1000 if self._busy() else 0.25)
            except queue.Empty:
                command = None
            else:
                if command is None:
                    break
            try:
                if command is not None:
                    self._run(command)
                self._pump()
            except ServerUnreachable as exc:
                self._lost(exc.message)
            except Exception as exc:  # keep the thread alive; the panel shows the error
                log.exception("BoxDream client thread")
                self._lost(f"client error: {type(exc).__name__}: {exc}")
        if self._client is not None:
            self._client.close()

    def _busy(self) -> bool:
        return bool(self._followed) and not self._down

    def _notify(self, notice: Notice) -> None:
        self._notices.put(notice)

    def _new_client(self, config: ConnectionConfig) -> Client:
        if self._client is not None:
            self._client.close()
        self._client = Client(
            config.address,
            curve=config.curve,
            timeout_s=config.timeout_s,
            heartbeat_s=config.heartbeat_s,
            retries=config.retries,
            client_name=CLIENT_NAME,
        )
        return self._client

    def _hello(self) -> bool:
        """Connect afresh and say hello; re-attach followed jobs. False if unreachable."""
        assert self._config is not None
        self._last_attempt = time.monotonic()
        client = self._new_client(self._config)
        try:
            info = client.hello()
        except (ServerUnreachable, ProtocolError) as exc:
            self._lost(exc.message)
            return False
        self._down = False
        self._notify(Connected(info))
        for job in sorted(self._followed):
            self._refetch(job)
        return True

    def _lost(self, message: str) -> None:
        self._down = True
        self._why = message
        self._last_attempt = time.monotonic()
        if self._client is not None:
            self._client.close()
            self._client = None
        self._notify(ConnectionLost(message))
        for job in sorted(self._followed):
            self._notify(JobWaiting(job, message))

    def _ready_client(self) -> Client | None:
        """The connected client; says hello first if there is none (not more often than
        every `reconnect_s` while the server is down); None while unreachable."""
        config = self._config
        if config is None:
            return None
        if self._client is None and (
            not self._down or time.monotonic() - self._last_attempt >= config.reconnect_s
        ):
            self._hello()
        return None if self._down else self._client

    def _run(self, command: Command) -> None:
        if isinstance(command, Connect):
            self._config = command.config
            self._hello()
            return
        if isinstance(command, Refetch):
            jobs = [j for j in command.jobs if command.force or j not in self._followed]
            self._followed.update(jobs)
            had_client = self._client is not None
            if self._ready_client() is not None and had_client:
                for job in jobs:
                    self._refetch(job)
            return
        if isinstance(command, Submit):
            self._submit(command.request)
            return
        client = self._ready_client()
        if client is None:
            why = f"cannot cancel: the BoxDream server is not reachable: {self._why}"
            self._notify(JobMessage(command.job, why))
            return
        try:
            client.cancel(command.job)
        except ProtocolError as exc:
            self._notify(JobMessage(command.job, f"cannot cancel: {exc.message}"))

    def _submit(self, request: JobRequest) -> None:
        job = request.job
        assert job is not None
        client = self._ready_client()
        if client is None:
            self._notify(JobFailed(job, f"the BoxDream server is not reachable: {self._why}"))
            return
        try:
            client.submit(request)
        except ProtocolError as exc:
            self._notify(JobFailed(job, exc.message))
            return
        except ServerUnreachable as exc:
            self._notify(JobFailed(job, exc.message))
            self._lost(exc.message)
            return
        self._followed.add(job)
        self._forward(client.poll(0))

    def _refetch(self, job: str) -> None:
        assert self._client is not None
        try:
            result = self._client.fetch_result(job)
        except ProtocolError as exc:
            self._followed.discard(job)
            self._notify(JobFailed(job, exc.message))
            return
        if result is not None:
            self._followed.discard(job)
            self._notify(JobEvent(replace(result, job=job)))

    def _forward(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Result | Error | Cancelled):
                self._followed.discard(event.job)
            self._notify(JobEvent(event))

    def _pump(self) -> None:
        if self._down:
            if (
                self._config is not None
                and self._followed
                and time.monotonic() - self._last_attempt >= self._config.reconnect_s
            ):
                self._hello()
            return
        if self._client is not None and self._followed:
            self._forward(self._client.poll(POLL_MS))
