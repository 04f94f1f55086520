"""Client glue: one I/O thread owns the ZeroMQ client; the main thread applies what it hears.

    main thread (operators, timer)          I/O thread (owns the `protocol.client.Client`)
      Connect / Submit / Cancel / Refetch  ───►  hello, submit, cancel, fetch_result
      drain(): jobs, previews, imports     ◄───  Connected, ConnectionLost, JobEvent, JobFailed

bpy is touched only by `drain`, on the main thread. In the UI a timer calls it a few times a
second; timers never fire in background mode (`blender -b`, bpy as a module), where operators
call `drain` themselves through `wait_for` until their job ends. So "poll" (`drain`) and
"apply a result" (`importer.apply_result`) are plain functions.

When the server goes silent the thread reports it within the client's timeout x retries,
marks the followed jobs "waiting", and retries `hello` every `reconnect_s`; once the server
answers it re-attaches to each job with `fetch_result`, so jobs resume where they are.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import bpy

from protocol.address import is_loopback
from protocol.client import Client
from protocol.curve import CurveKeys
from protocol.errors import ErrorCode, ProtocolError, ServerUnreachable
from protocol.frames import new_job_id
from protocol.messages import (
    Accepted,
    Cancelled,
    Error,
    Event,
    JobRequest,
    JobWarning,
    Preview,
    Progress,
    Result,
    ServerInfo,
)

from . import importer
from .preferences import addon_preferences, user_dir
from .properties import FINISHED_STATES, BoxDreamJob

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


def connection_config(context: bpy.types.Context) -> ConnectionConfig:
    """The connection the preferences ask for; raises `ConnectionBlocked` saying why not."""
    prefs = addon_preferences(context)
    address = prefs.server_address.strip()
    if not address:
        raise ConnectionBlocked("no server address: set one in the BoxDream preferences")
    if not bpy.app.online_access and not is_loopback(address):
        raise ConnectionBlocked(
            f"{address} is not on this computer and Blender's online access is off "
            "(Preferences > System > Network > Allow Online Access)"
        )
    curve = None
    if prefs.use_curve:
        server_key = Path(bpy.path.abspath(prefs.server_public_key))
        client_key = Path(bpy.path.abspath(prefs.client_secret_key))
        try:
            curve = CurveKeys.load(client_key, server_key)
        except (OSError, ValueError) as exc:
            raise ConnectionBlocked(f"CURVE keys could not be read: {exc}") from exc
    return ConnectionConfig(
        address=address,
        curve=curve,
        timeout_s=prefs.timeout_s,
        heartbeat_s=prefs.heartbeat_s,
        retries=prefs.retries,
        reconnect_s=prefs.reconnect_s,
    )


def find_job(job_id: str) -> tuple[bpy.types.Scene, BoxDreamJob] | None:
    """The scene and job entry with this id, in any scene of the file."""
    for scene in bpy.data.scenes:
        for job in scene.boxdream.jobs:
            if job.job_id == job_id:
                return scene, job
    return None


def _tag_redraw() -> None:
    window_manager = bpy.context.window_manager
    if window_manager is None:
        return
    for window in window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


class Session:
    """The add-on's connection: the I/O thread, its queues, and the state the panel shows."""

    def __init__(self) -> None:
        self.state = ConnectionState()
        self._commands: queue.Queue[Command | None] = queue.Queue()
        self._notices: queue.Queue[Notice] = queue.Queue()
        self._thread: IOThread | None = None

    def _send(self, command: Command) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = IOThread(self._commands, self._notices)
            self._thread.start()
        self._commands.put(command)

    def connect(self, context: bpy.types.Context) -> None:
        """(Re)connect as the preferences say; raises `ConnectionBlocked` if they forbid it."""
        try:
            config = connection_config(context)
        except ConnectionBlocked as exc:
            self.state = ConnectionState(status="blocked", message=str(exc))
            raise
        self.state = ConnectionState(status="connecting", address=config.address)
        self._send(Connect(config))

    def ensure_connected(self, context: bpy.types.Context) -> None:
        """Connect unless connected or connecting to the configured address."""
        address = addon_preferences(context).server_address.strip()
        if self.state.status in ("connected", "connecting") and self.state.address == address:
            return
        self.connect(context)

    def submit(self, context: bpy.types.Context, request: JobRequest) -> str:
        """Queue `request` for sending; returns its job id (chosen here, so it is known now)."""
        self.ensure_connected(context)
        job = request.job or new_job_id()
        self._send(Submit(replace(request, job=job)))
        return job

    def cancel(self, job: str) -> None:
        """Ask the server to stop `job`."""
        self._send(CancelJob(job))

    def refetch(self, context: bpy.types.Context, jobs: list[str]) -> None:
        """Re-attach to `jobs` (results of finished ones, events of running ones)."""
        self.ensure_connected(context)
        if jobs:
            self._send(Refetch(tuple(jobs)))

    def stop(self) -> None:
        """End the I/O thread (it closes its socket)."""
        if self._thread is not None and self._thread.is_alive():
            self._commands.put(None)
            self._thread.join(timeout=5.0)
        self._thread = None

    @property
    def active(self) -> bool:
        """Whether the thread runs (the timer then polls more often)."""
        return self._thread is not None and self._thread.is_alive()

    def drain(self, context: bpy.types.Context) -> int:
        """Apply every notice the I/O thread has queued; returns how many (main thread only)."""
        count = 0
        while True:
            try:
                notice = self._notices.get_nowait()
            except queue.Empty:
                break
            count += 1
            self._apply(context, notice)
        if count:
            _tag_redraw()
        return count

    def wait_for(
        self,
        context: bpy.types.Context,
        done: Callable[[], bool],
        timeout_s: float | None,
    ) -> bool:
        """Drain until `done()` (background mode, where no timer runs); False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not done():
            if deadline is not None and time.monotonic() > deadline:
                return False
            if not self.drain(context):
                time.sleep(POLL_MS / 1000)
        return True

    def _apply(self, context: bpy.types.Context, notice: Notice) -> None:
        if isinstance(notice, Connected):
            self.state = ConnectionState("connected", "", self.state.address, notice.info)
            if jobs := unfinished_jobs():
                self._send(Refetch(tuple(jobs), force=False))
            return
        if isinstance(notice, ConnectionLost):
            self.state = ConnectionState("unreachable", notice.message, self.state.address)
            return
        job_id = notice.event.job if isinstance(notice, JobEvent) else notice.job
        found = find_job(job_id or "")
        if found is None:
            return
        scene, job = found
        if isinstance(notice, JobFailed):
            if not job.finished:
                job.state = "failed"
                job.message = notice.message
        elif isinstance(notice, JobMessage):
            job.message = notice.message
        elif isinstance(notice, JobWaiting):
            if not job.finished:
                job.state = "waiting"
                job.message = notice.message
        else:
            apply_event(context, scene, job, notice.event)


def apply_event(
    context: bpy.types.Context, scene: bpy.types.Scene, job: BoxDreamJob, event: Event
) -> None:
    """Update a job entry from one protocol event; a `Result` is imported into `scene`."""
    if job.finished:
        return
    if isinstance(event, Accepted):
        job.state = "queued" if event.queue_position > 0 else "running"
        job.queue_position = event.queue_position
        job.message = ""
    elif isinstance(event, Progress):
        job.state = "running"
        job.stage, job.step, job.total = event.stage, event.step, event.total
        job.eta_s = -1.0 if event.eta_s is None else event.eta_s
        if job.message.startswith("no answer"):
            job.message = ""
    elif isinstance(event, Preview):
        show_preview(job, event.png)
    elif isinstance(event, JobWarning):
        job.message = event.message
    elif isinstance(event, Result):
        try:
            importer.apply_result(context, scene, job, event)
        except (importer.ImportFailed, RuntimeError, OSError) as exc:
            job.state = "failed"
            job.message = f"the result could not be imported: {exc}"
            return
        job.state = "done"
        job.message = ""
        if not bpy.app.background:
            push_undo(f"BoxDream: {job.title}")
    elif isinstance(event, Error):
        job.state = "interrupted" if event.code == ErrorCode.INTERRUPTED else "failed"
        job.message = event.message
    elif isinstance(event, Cancelled):
        job.state = "cancelled"


def show_preview(job: BoxDreamJob, png: bytes) -> None:
    """Write a preview PNG to the user folder and (re)load it into the job's image."""
    path = user_dir("previews") / f"{job.job_id}.png"
    path.write_bytes(png)
    image = job.preview
    if image is None:
        image = bpy.data.images.load(str(path), check_existing=False)
        image.name = f"BoxDream Preview {job.job_id[:8]}"
        job.preview = image
    else:
        image.filepath = str(path)
        image.reload()
    image.preview_ensure()
    image.preview.reload()


def push_undo(message: str) -> None:
    """Make the changes so far one undo step (UI only; the timer is no operator)."""
    window_manager = bpy.context.window_manager
    if window_manager is None or not window_manager.windows:
        return
    with bpy.context.temp_override(window=window_manager.windows[0]):
        bpy.ops.ed.undo_push(message=message)


def unfinished_jobs() -> list[str]:
    """Ids of the jobs in any scene that have not ended (and were submitted)."""
    return [
        job.job_id
        for scene in bpy.data.scenes
        for job in scene.boxdream.jobs
        if job.state not in FINISHED_STATES and job.state != "submitting"
    ]


SESSION = Session()
"""The one session of this Blender process."""


def _timer() -> float:
    SESSION.drain(bpy.context)
    return 0.1 if SESSION.active else 0.5


def register() -> None:
    """Start polling from the UI's event loop (no effect in background mode)."""
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=0.2, persistent=True)


def unregister() -> None:
    """Stop polling and end the I/O thread."""
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    SESSION.stop()
