"""Client glue: the I/O thread (`client_thread.IOThread`) owns the ZeroMQ client; the main
thread applies what it hears.

bpy is touched only by `drain`, on the main thread. In the UI a timer calls it a few times a
second; timers never fire in background mode (`blender -b`, bpy as a module), where operators
call `drain` themselves through `wait_for` until their job ends. So "poll" (`drain`) and
"apply a result" (`importer.apply_result`) are plain functions.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import bpy

from . import importer
from .client_thread import (
    POLL_MS,
    CancelJob,
    Command,
    Connect,
    Connected,
    ConnectionBlocked,
    ConnectionConfig,
    ConnectionLost,
    ConnectionState,
    IOThread,
    JobEvent,
    JobFailed,
    JobMessage,
    JobWaiting,
    Notice,
    Refetch,
    Submit,
)
from .preferences import addon_preferences, user_dir
from .properties import FINISHED_STATES, BoxDreamJob
from .protocol.address import is_loopback
from .protocol.curve import CurveKeys
from .protocol.errors import ErrorCode
from .protocol.frames import new_job_id
from .protocol.messages import (
    Accepted,
    Cancelled,
    Error,
    Event,
    JobRequest,
    JobWarning,
    Preview,
    Progress,
    Result,
)

log = logging.getLogger("boxdream.addon")


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
