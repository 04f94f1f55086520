"""The job server: broker thread, workers (local threads or processes, or a Ray pool's
relays), job store and security, together."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from backend import __version__
from backend.server.access import Access
from backend.server.broker import Broker
from backend.server.jobstore import JobRecord, JobStore
from backend.server.lifeline import ENDPOINT_SOCKET, make_endpoint_folder, reap_endpoint_folders
from backend.server.security import ServerCurve, exposure_warning
from backend.server.worker import Pipeline, Worker, run_worker_process
from protocol.limits import Limits
from protocol.messages import JobState, ServerInfo, validate
from protocol.version import PROTOCOL_VERSION

if TYPE_CHECKING:
    from backend.server.raypool import RayPool

log = logging.getLogger("boxdream.server")

SHUTDOWN_LINGER_MS = 1000
"""How long the last events (jobs interrupted by the shutdown) may take to reach clients."""
WORKER_HEARTBEAT_MS = (2000, 10_000)
"""ZMTP heartbeat interval and timeout on the workers' back end."""
SUPERVISE_INTERVAL_S = 1.0
"""How often local worker processes are checked; one that has ended is started again."""

INFO_KEYS = ("models", "default_model", "methods", "presets", "vocabulary")
"""Keys of the pipelines' `server_info_fields(device)` dict."""


def server_version() -> str:
    """The version of the backend package."""
    return __version__


def build_server_info(
    info_fields: Mapping[str, Any],
    devices: tuple[str, ...],
    model: str | None,
    limits: Limits,
) -> ServerInfo:
    """The hello reply for the pipelines' `info_fields` on `devices`.

    `model`, if given, becomes the default model (added to the list when missing).
    """
    missing = [key for key in INFO_KEYS if key not in info_fields]
    if missing:
        raise ValueError(f"server info fields lack {', '.join(missing)}")
    models = list(info_fields["models"])
    default_model = info_fields["default_model"]
    if model is not None:
        default_model = model
        if model not in models:
            models.append(model)
    info = ServerInfo(
        server_version=server_version(),
        protocol_version=PROTOCOL_VERSION,
        device=",".join(devices) or "none",
        models=models,
        default_model=default_model,
        methods=list(info_fields["methods"]),
        presets={method: list(names) for method, names in info_fields["presets"].items()},
        limits=limits,
        vocabulary=info_fields["vocabulary"],
        model_settings=info_fields.get("model_settings"),
    )
    validate(info, limits)
    return info


@dataclass(frozen=True)
class ServerConfig:
    """How to run a server."""

    jobs_dir: Path
    """Folder holding one sub-folder per job."""
    bind: str = "tcp://127.0.0.1:5555"
    """Client front end address; a tcp port of * picks a free port (see `Server.address`)."""
    devices: tuple[str, ...] = ("cpu",)
    """One local worker per entry, e.g. ("cuda:0", "cuda:1"); ignored with `ray`."""
    model: str | None = None
    """Default model (name or path) for requests that name none; None: the pipelines' own."""
    curve_dir: Path | None = None
    """Keys folder (`boxdream keys`): enables CURVE and admits only its listed clients."""
    ray: str | None = None
    """Run jobs on this Ray cluster ("auto": the one this host joined, or the head's
    address) instead of local workers (`backend.server.raypool`)."""
    retries: int = 1
    """Ray pool: times a job whose worker or host died runs again before it is interrupted."""
    limits: Limits = field(default_factory=Limits)
    """Limits enforced and advertised."""
    max_queued: int = 100
    """Jobs waiting in the queue before new submits are refused with queue_full."""
    client_hwm: int = 200
    """Messages queued per client before events to it are dropped (it can fetch later)."""
    worker_processes: bool = False
    """Run local workers as processes (spawned) rather than threads, so that a pipeline
    holding the GIL never starves the broker; `pipeline` must then be picklable."""
    jobs_group: int | None = None
    """Group id that may read the jobs folder (`--jobs-group`); None: only the server's user."""


class Server:
    """A running BoxDream server; `start` it, `stop` it (or use it as a context manager)."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        pipeline: Pipeline,
        info_fields: Mapping[str, Any],
    ) -> None:
        """`pipeline` runs jobs; `info_fields` holds the models, default_model, methods,
        presets and vocabulary the server advertises (`server_info_fields(device)`)."""
        self._config = config
        self._pipeline = pipeline
        devices = ("ray",) if config.ray is not None else config.devices
        self._info = build_server_info(info_fields, devices, config.model, config.limits)
        self._context: zmq.Context | None = None
        self._threads: list[threading.Thread] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._supervisor: threading.Thread | None = None
        self._ipc_dir: Path | None = None
        self._stop = threading.Event()
        self._authenticator: ThreadAuthenticator | None = None
        self._address = ""
        self._pool: RayPool | None = None

    @property
    def info(self) -> ServerInfo:
        """What the server answers to a hello."""
        return self._info

    @property
    def address(self) -> str:
        """The bound client address (with the real port), after `start`."""
        return self._address

    @property
    def pool(self) -> RayPool | None:
        """The Ray pool, after `start` with `ray`."""
        return self._pool

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the local worker processes (empty for worker threads)."""
        return [process.pid for process in self._processes if process.pid is not None]

    def start(self) -> None:
        """Bind the sockets (raising `zmq.ZMQError` if an address is taken), start workers."""
        config = self._config
        warning = exposure_warning(config.bind, config.curve_dir is not None)
        if warning:
            log.warning(warning)
        for folder in reap_endpoint_folders():
            log.warning("removed %s, left by a server that ended without stopping", folder)
        store = JobStore(config.jobs_dir, config.limits, Access(group=config.jobs_group))
        resumed = self._recover(store)
        context = zmq.Context()
        self._context = context
        curve = ServerCurve.from_dir(config.curve_dir) if config.curve_dir else None
        if curve is not None:
            self._authenticator = curve.start_authenticator(context)
        frontend = self._router(context, curve)
        frontend.sndhwm = config.client_hwm
        frontend.heartbeat_ivl = 5000
        frontend.heartbeat_timeout = 15000
        local = self._router(context, None)
        local.heartbeat_ivl, local.heartbeat_timeout = WORKER_HEARTBEAT_MS
        sockets = [frontend, local]
        try:
            frontend.bind(config.bind)
            self._address = frontend.last_endpoint.decode()
            local_address = self._bind_local(local)
        except zmq.ZMQError:
            for socket in sockets:
                socket.close(linger=0)
            self._close_context()
            if self._pool is not None:
                self._pool.stop(0)
            raise
        broker = Broker(
            frontend=frontend,
            backend=local,
            store=store,
            info=self._info,
            max_queued=config.max_queued,
            stop=self._stop,
            placement=self._pool,
            retries=config.retries if self._pool is not None else 0,
            keep_jobs=self._pool is not None,
            resumed=resumed,
        )
        self._threads = [
            threading.Thread(
                target=self._run_broker,
                args=(broker, sockets),
                name="boxdream-broker",
                daemon=True,
            )
        ]
        if self._pool is not None:
            running = [record.job for record in resumed if record.state == JobState.RUNNING]
            self._pool.start(local_address, context, self._stop, running)
        for index, device in enumerate(() if self._pool is not None else config.devices):
            self._start_worker(index, device, local_address, context)
        if self._processes:
            self._supervisor = threading.Thread(
                target=self._supervise,
                args=(config.devices, local_address),
                name="boxdream-supervisor",
                daemon=True,
            )
            self._supervisor.start()
        for thread in self._threads:
            thread.start()
        log.info(
            "serving on %s, jobs in %s, workers: %s",
            self._address,
            config.jobs_dir,
            f"Ray pool of {len(self._pool.actors())}" if self._pool else ", ".join(config.devices),
        )

    def _recover(self, store: JobStore) -> list[JobRecord]:
        """Settle what a previous server left; returns the jobs to resume (a Ray pool's:
        queued ones, and running ones an actor still holds)."""
        config = self._config
        if config.ray is None:
            interrupted = store.recover()
        else:
            from backend.server.raypool import RayPool

            self._pool = RayPool(
                address=config.ray,
                pipeline=self._pipeline,
                model=config.model,
                models=list(self._info.models),
                limits=config.limits,
            )
            self._pool.connect()
            self._pool.refresh()
            interrupted = store.recover(keep_queued=True, running=self._pool.held_jobs())
        if interrupted:
            log.warning("marked %d unfinished jobs as interrupted", len(interrupted))
        resumed = store.unfinished() if self._pool is not None else []
        if self._pool is not None:
            self._pool.release_except({record.job for record in resumed})
            self._pool.renew()
            log.info("resuming %d unfinished jobs on the Ray pool", len(resumed))
        return resumed

    def _bind_local(self, socket: zmq.Socket) -> str:
        """Bind the local workers' socket: inproc for threads, a private ipc path (or
        loopback tcp where ipc is missing) for processes. Returns the address to connect."""
        if not self._config.worker_processes or self._config.ray is not None:
            socket.bind(f"inproc://boxdream-workers-{id(self)}")
        elif zmq.has("ipc"):
            self._ipc_dir = make_endpoint_folder()
            socket.bind(f"ipc://{self._ipc_dir / ENDPOINT_SOCKET}")
        else:
            socket.bind("tcp://127.0.0.1:*")
        return socket.last_endpoint.decode()

    def _start_worker(self, index: int, device: str, address: str, context: zmq.Context) -> None:
        name = f"{device}#{index}"
        if self._config.worker_processes:
            self._processes.append(self._spawn_worker(index, device, address))
            return
        worker = Worker(
            address=address,
            device=device,
            pipeline=self._pipeline,
            model=self._config.model,
            limits=self._config.limits,
            context=context,
            name=name,
        )
        self._threads.append(
            threading.Thread(
                target=worker.run,
                args=(self._stop,),
                name=f"boxdream-worker-{index}",
                daemon=True,
            )
        )

    def _spawn_worker(
        self, index: int, device: str, address: str
    ) -> multiprocessing.process.BaseProcess:
        process = multiprocessing.get_context("spawn").Process(
            target=run_worker_process,
            args=(address, device, self._pipeline, self._config.model, self._config.limits),
            kwargs={
                "name": f"{device}#{index}",
                "parent_pid": os.getpid(),
                "endpoint": self._ipc_dir,
            },
            name=f"boxdream-worker-{index}",
            daemon=True,
        )
        process.start()
        return process

    def _supervise(self, devices: tuple[str, ...], address: str) -> None:
        """Start again every local worker process that has ended (killed, out of memory),
        until the server stops; the broker interrupts the job it was running."""
        while not self._stop.wait(SUPERVISE_INTERVAL_S):
            for index, process in enumerate(self._processes):
                if process.is_alive() or self._stop.is_set():
                    continue
                log.error(
                    "worker process %s ended (exit code %s); starting a new one",
                    process.name,
                    process.exitcode,
                )
                self._processes[index] = self._spawn_worker(index, devices[index], address)

    def _router(self, context: zmq.Context, curve: ServerCurve | None) -> zmq.Socket:
        socket = context.socket(zmq.ROUTER)
        socket.linger = 0
        socket.router_mandatory = 1
        socket.maxmsgsize = self._config.limits.max_message_bytes
        if curve is not None:
            curve.apply(socket)
        return socket

    @staticmethod
    def _run_broker(broker: Broker, sockets: list[zmq.Socket]) -> None:
        try:
            broker.run()
        finally:
            frontend, backend = sockets
            frontend.close(linger=SHUTDOWN_LINGER_MS)
            backend.close(linger=0)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the broker and the workers; unfinished jobs are recorded as interrupted (a Ray
        pool's go on, for the next front end)."""
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join()  # it may be starting a process; it ends within a second
            self._supervisor = None
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            process.join(timeout_s)
            if process.is_alive():
                log.error("worker process %s did not stop; killing it", process.name)
                process.kill()
                process.join()
        self._processes = []
        if self._ipc_dir is not None:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
            self._ipc_dir = None
        stuck = [] if self._pool is None else self._pool.stop(timeout_s)
        for thread in self._threads:
            thread.join(timeout_s)
            if thread.is_alive():
                stuck.append(thread.name)
        self._threads = []
        if stuck:
            log.error("threads still busy after %.0f s: %s", timeout_s, ", ".join(stuck))
            return
        self._close_context()
        log.info("stopped")

    def _close_context(self) -> None:
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
