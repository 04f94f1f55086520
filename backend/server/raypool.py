"""A studio's GPU hosts as one pool on Ray: worker actors, the front end's relays to them,
and the placement of jobs by model and GPU memory (`boxdream serve --ray`).

Every GPU of the cluster gets one long-lived worker actor (`num_gpus=1`; on a cluster with no
GPU at all, one actor per node with `num_cpus=1`), named and detached, created when the front
end starts and whenever a node joins (checked every `KEEP_INTERVAL_S`). An actor keeps its
process, and so the priors its pipeline loaded, between jobs and across front-end restarts.

An actor runs one job at a time in a thread and keeps its events in a buffer (an actor-side
queue). The front end has one relay per actor: a `Worker` on the broker's private back end,
like a local worker, that starts jobs on its actor and long-polls their events
(`events(job, since, wait_s)` answers as soon as there are new ones), so progress, previews
and results reach the broker as they happen. A cancel sets a flag the pipeline polls between
steps. Events the relay has seen are dropped from the buffer; a finished job's last events
stay until the actor's next job, so a front end that stops between fetching and storing a
result finds it again.

A relay whose actor died (its process killed, its host lost) reports the job interrupted and
ends; the broker runs the job again on another worker (`--retries`). A front end that starts
finds the actors by name, re-attaches to the jobs they run and relays what it has not stored.

Placement: actors advertise which of the server's models their host has (the built-in model
everywhere; a path where that folder exists; a hub id where the host's hub cache holds it) and
their GPU memory (the node's `boxdream_gpu_gib` resource shared by its GPUs, else what CUDA
reports, else unknown: not limited). A job goes only to an actor with its model and memory for
its method and preset (`MEMORY_GIB`); a job no actor can take is refused at submit.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import zmq

from backend.server.broker import WORKER_EVENT_TYPES, Needs
from backend.server.worker import Pipeline, Worker, pipeline_events, send_frames
from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import Limits
from protocol.messages import JOB_REQUEST_TYPES, Error, JobRequest, Message, decode_message

log = logging.getLogger("boxdream.server.ray")

NAMESPACE = "boxdream"
"""Ray namespace of the worker actors."""
ACTOR_PREFIX = "boxdream-worker-"
"""Worker actor names: prefix, node id (12 hex digits), GPU index."""
KEEP_INTERVAL_S = 2.0
"""How often the front end looks for nodes that joined."""
POLL_S = 0.5
"""Longest wait of one `events` call when nothing happens."""
START_WAIT_S = 30.0
"""How long `start` waits for a job being cancelled (one a new front end let go) to end."""
GPU_MEMORY_RESOURCE = "boxdream_gpu_gib"
"""Node resource: GPU memory in GiB, shared by the node's GPUs (overrides what CUDA says)."""
BUILTIN_MODEL = "tiny-shapes"
"""The model every host has (it ships in the package)."""
MEMORY_GIB: dict[tuple[str, str], float] = {
    ("sds", "preview"): 4,
    ("sds", "standard"): 6,
    ("sds", "high"): 8,
    ("sjc", "preview"): 4,
    ("sjc", "standard"): 6,
    ("sjc", "high"): 8,
    ("vsd", "preview"): 10,
    ("vsd", "standard"): 16,
    ("vsd", "high"): 24,
}
"""GPU memory (GiB) a Stable Diffusion-size model needs by method and preset: estimates built
on the README's GPU goals (SDS standard under 6 GB, VSD at 512² under 24 GB), with SJC like
SDS as the CPU bench's peak memory shows (`boxdream bench --architecture sd-2.1`); not yet
measured on a GPU. The built-in model needs `BUILTIN_GIB` for any of them."""
BUILTIN_GIB = 1.0


def memory_estimate_gib(needs: Needs) -> float:
    """GPU memory a job with `needs` is expected to take (`MEMORY_GIB`)."""
    if needs.model == BUILTIN_MODEL:
        return BUILTIN_GIB
    return MEMORY_GIB.get((needs.method, needs.preset), max(MEMORY_GIB.values()))


def model_present(model: str) -> bool:
    """Whether this host has `model`: built in, a folder here, or a hub id in the hub cache."""
    if model == BUILTIN_MODEL or Path(model).expanduser().is_dir():
        return True
    if model.count("/") != 1:
        return False
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    cache = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    return (cache / f"models--{model.replace('/', '--')}").is_dir()


def fingerprint(*settings: object) -> str:
    """A short digest of a worker's settings and the backend's version: an actor started by a
    front end with other settings (or code) is replaced when found idle."""
    from backend import __version__

    return hashlib.sha256(pickle.dumps((__version__, *settings))).hexdigest()[:16]


def cuda_memory_gib() -> float | None:
    """Total memory of this process's first CUDA device (None without one; torch is only
    imported where an NVIDIA driver is present)."""
    if not Path("/dev/nvidiactl").exists():
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 2**30


class PoolWorker:
    """The body of a worker actor: runs one job at a time, keeps its events for the relay."""

    def __init__(
        self,
        pipeline: Pipeline,
        model: str | None,
        limits: Limits,
        name: str,
        models: list[str],
        config: str,
    ) -> None:
        """`model`: the default for requests that name none; `models`: the server's models;
        `config`: the fingerprint of all these (`fingerprint`)."""
        self._config = config
        self._pipeline = pipeline
        self._model = model
        self._limits = limits
        self._name = name
        self._models = models
        self._condition = threading.Condition()
        self._job: str | None = None
        self._events: list[list[bytes]] = []
        self._first = 0
        self._finished = True
        self._cancel = False

    def describe(self) -> dict[str, Any]:
        """Where it runs, what it has (models, GPU memory) and its job (None when idle)."""
        import ray

        with self._condition:
            job = self._job
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(),
            "address": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "models": [model for model in self._models if model_present(model)],
            "memory_gib": cuda_memory_gib(),
            "job": job,
            "config": self._config,
        }

    def start(self, frames: list[bytes]) -> bool:
        """Start the job in `frames` (a request's wire frames); False while one runs."""
        request = decode_message(frames, self._limits, JOB_REQUEST_TYPES)
        assert isinstance(request, JobRequest)
        with self._condition:
            if not self._condition.wait_for(lambda: self._finished, START_WAIT_S):
                return False
            self._job, self._events, self._first = request.job, [], 0
            self._finished, self._cancel = False, False
        threading.Thread(target=self._run, args=(request,), daemon=True).start()
        return True

    def _run(self, request: JobRequest) -> None:
        try:
            for event in pipeline_events(
                self._pipeline,
                request,
                device="auto",
                model=request.model or self._model,
                cancelled=lambda: self._cancel,
                stopping=lambda: False,
                limits=self._limits,
                name=self._name,
            ):
                with self._condition:
                    self._events.append(event.to_wire())
                    self._condition.notify_all()
        finally:
            with self._condition:
                self._finished = True
                self._condition.notify_all()

    def events(
        self, job: str, since: int, wait_s: float
    ) -> tuple[int, list[list[bytes]], bool] | None:
        """Events of `job` from number `since` on, waiting up to `wait_s` for one: (number of
        the first, their frames, whether the job has ended); None for a job it does not hold.
        Events before `since` are dropped (the relay has them)."""
        deadline = time.monotonic() + wait_s
        with self._condition:
            if job != self._job:
                return None
            seen = min(max(since - self._first, 0), len(self._events))
            del self._events[:seen]
            self._first += seen
            while not self._events and not self._finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._condition.wait(left)
            return self._first, list(self._events), self._finished

    def cancel(self, job: str) -> None:
        """Ask the pipeline to stop `job` at its next step."""
        with self._condition:
            if job == self._job:
                self._cancel = True

    def release(self, job: str) -> None:
        """Forget `job`: cancel it if it runs, drop its events."""
        with self._condition:
            if job != self._job:
                return
            self._cancel = True
            self._events = []
            if self._finished:
                self._job = None


@dataclass(frozen=True)
class ActorInfo:
    """A worker actor, as the front end knows it."""

    name: str
    """Its Ray name (also its worker name in the broker)."""
    node_id: str
    """The Ray node it runs on."""
    gpu: bool
    """Whether it holds a GPU."""
    config: str
    """The fingerprint of the settings it was started with (`fingerprint`)."""
    handle: Any
    """Its Ray actor handle."""
    host: str
    """Its host name and address, for messages."""
    models: frozenset[str]
    """The server's models its host has."""
    memory_gib: float | None
    """Its GPU memory; None: unknown, not limited."""
    job: str | None
    """The job it held when the front end found it."""


def interrupted(job: str, name: str, host: str, cause: str) -> Error:
    """The event that reports a job lost with its worker (the broker may retry it)."""
    message = (
        f"job {job} was interrupted: worker {name} on {host} went away while running it ({cause})"
    )
    return Error(code=ErrorCode.INTERRUPTED, field="job", message=message, job=job)


class RayRelay(Worker):
    """The front end's relay to one worker actor: a `Worker` on the broker's back end whose
    jobs run on the actor."""

    def __init__(
        self,
        actor: ActorInfo,
        *,
        address: str,
        limits: Limits,
        context: zmq.Context,
        attached: str | None,
    ) -> None:
        """`attached`: the job the actor runs for a previous front end, to re-attach to."""
        super().__init__(
            address=address,
            device=f"ray:{actor.host}",
            pipeline=_no_pipeline,
            limits=limits,
            context=context,
            name=actor.name,
        )
        self._actor = actor
        self._attached = attached
        self._dead = False

    @property
    def serving(self) -> bool:
        """False once its actor has died."""
        return not self._dead

    def _resume(self, socket: zmq.Socket, stop: threading.Event) -> None:
        job = self._attached
        if job is None:
            return
        send_frames(socket, self._ready(0, job), stop)
        follow = functools.partial(self._follow, job, stopping=stop.is_set)
        self._send_events(socket, job, follow, stop)

    def _events(
        self,
        request: JobRequest,
        cancelled: Callable[[], bool],
        stopping: Callable[[], bool],
    ) -> Iterator[Message]:
        import ray
        from ray.exceptions import RayActorError

        assert request.job is not None
        try:
            started = ray.get(self._actor.handle.start.remote(request.to_wire()))
        except RayActorError as exc:
            self._dead = True
            yield interrupted(request.job, self._name, self._actor.host, type(exc).__name__)
            return
        if not started:
            yield interrupted(request.job, self._name, self._actor.host, "it was busy")
            return
        yield from self._follow(request.job, cancelled, stopping)

    def _follow(
        self, job: str, cancelled: Callable[[], bool], stopping: Callable[[], bool]
    ) -> Iterator[Message]:
        """Relay the events of `job` from the actor until it ends, its actor dies or the
        front end stops (the job then goes on, for the next front end)."""
        import ray
        from ray.exceptions import RayActorError

        handle, seen, cancel_sent = self._actor.handle, 0, False
        while not stopping():
            if not cancel_sent and cancelled():
                handle.cancel.remote(job)
                cancel_sent = True
            try:
                reply = ray.get(handle.events.remote(job, seen, POLL_S))
            except RayActorError as exc:
                self._dead = True
                yield interrupted(job, self._name, self._actor.host, type(exc).__name__)
                return
            if reply is None:
                yield interrupted(job, self._name, self._actor.host, "it no longer holds the job")
                return
            first, frames, ended = reply
            for wire in frames[max(seen - first, 0) :]:
                yield decode_message(wire, self._limits, WORKER_EVENT_TYPES)
            seen = first + len(frames)
            if ended:
                return


def _no_pipeline(*_: object, **__: object) -> Iterator[Message]:
    raise AssertionError("a relay runs its jobs on its actor")


class RayPool:
    """The worker actors of a Ray cluster, their relays, and placement (`Placement`)."""

    def __init__(
        self,
        *,
        address: str,
        pipeline: Pipeline,
        model: str | None,
        models: list[str],
        limits: Limits,
    ) -> None:
        """`address`: "auto" (the cluster this host joined) or the head's address."""
        self._address = address
        self._pipeline = pipeline
        self._model = model
        self._models = models
        self._limits = limits
        self._lock = threading.Lock()
        self._actors: dict[str, ActorInfo] = {}
        self._threads: list[threading.Thread] = []
        self._connected = False
        self._config = fingerprint(pipeline, model, limits, models)

    def connect(self) -> None:
        """Join the cluster as a driver (unless this process already has)."""
        try:
            import ray
        except ImportError as exc:
            raise RuntimeError(f"--ray needs Ray: pip install 'boxdream[cluster]' ({exc})") from exc
        if ray.is_initialized():
            return
        ray.init(
            address=self._address,
            namespace=NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        self._connected = True

    def refresh(self) -> list[ActorInfo]:
        """Start or find a worker actor for every GPU of every live node (every node when
        the cluster has no GPU); returns the actors new to this front end."""
        import ray

        nodes = [node for node in ray.nodes() if node["Alive"]]
        any_gpu = any(node["Resources"].get("GPU", 0) >= 1 for node in nodes)
        wanted = []
        for node in nodes:
            gpus = int(node["Resources"].get("GPU", 0))
            if any_gpu and gpus == 0:
                continue
            memory = node["Resources"].get(GPU_MEMORY_RESOURCE)
            for index in range(max(gpus, 1)):
                name = f"{ACTOR_PREFIX}{node['NodeID'][:12]}-{index}"
                if name not in self._actors:
                    per_gpu = None if memory is None else memory / max(gpus, 1)
                    wanted.append((name, node["NodeID"], gpus > 0, per_gpu))
        found = []
        for name, node_id, gpu, memory in wanted:
            try:
                handle = self._actor(name, node_id, gpu)
                details = ray.get(handle.describe.remote(), timeout=120)
            except (ray.exceptions.RayError, TimeoutError) as exc:
                log.warning("worker actor %s did not answer: %s", name, exc)
                continue
            info = ActorInfo(
                name=name,
                node_id=node_id,
                gpu=gpu,
                config=details["config"],
                handle=handle,
                host=f"{details['host']} ({details['address']})",
                models=frozenset(details["models"]),
                memory_gib=memory if memory is not None else details["memory_gib"],
                job=details["job"],
            )
            found.append(info)
            log.info(
                "worker %s on %s: models %s, GPU memory %s",
                name,
                info.host,
                ", ".join(sorted(info.models)) or "none",
                "unknown" if info.memory_gib is None else f"{info.memory_gib:.0f} GiB",
            )
        self.add(*found)
        return found

    def add(self, *actors: ActorInfo) -> None:
        """Know these worker actors (for placement) from now on."""
        with self._lock:
            self._actors.update((info.name, info) for info in actors)

    def renew(self) -> None:
        """Start again the idle actors that run other settings than this front end's (an
        upgrade, another default model); call after `release_except`. One that holds a job
        is kept for it."""
        import ray

        for info in self.actors():
            if info.config == self._config:
                continue
            if ray.get(info.handle.describe.remote(), timeout=120)["job"] is not None:
                log.warning("worker %s runs other settings; it is kept for its job", info.name)
                continue
            log.info("worker %s runs other settings; starting a new one", info.name)
            ray.kill(info.handle, no_restart=True)
            deadline = time.monotonic() + 30
            while True:  # until the name is free and a new actor answers (kill is async)
                try:
                    handle = self._actor(info.name, info.node_id, info.gpu)
                    if ray.get(handle.describe.remote(), timeout=120)["config"] == self._config:
                        break
                except ray.exceptions.RayActorError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {info.name} could not be started again")
                time.sleep(0.2)
            self.add(replace(info, handle=handle, config=self._config, job=None))

    def _actor(self, name: str, node_id: str, gpu: bool) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        actor_class = ray.remote(PoolWorker)
        return actor_class.options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_gpus=1 if gpu else 0,
            num_cpus=0 if gpu else 1,
            max_concurrency=4,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(self._pipeline, self._model, self._limits, name, self._models, self._config)

    def held_jobs(self) -> dict[str, str]:
        """Jobs the actors held when found (running, or ended and not yet stored): job ->
        actor name."""
        with self._lock:
            return {info.job: name for name, info in self._actors.items() if info.job}

    def release_except(self, kept: Collection[str]) -> None:
        """Tell actors to drop the jobs they hold that are not in `kept` (stored already), and
        wait for them to have done so (a threaded actor may run later calls first)."""
        import ray

        calls = [
            self._actors[name].handle.release.remote(job)
            for job, name in self.held_jobs().items()
            if job not in kept
        ]
        ray.get(calls, timeout=120)
        with self._lock:
            for name, info in self._actors.items():
                if info.job is not None and info.job not in kept:
                    self._actors[name] = replace(info, job=None)

    def start(
        self,
        address: str,
        context: zmq.Context,
        stop: threading.Event,
        attached: Collection[str],
    ) -> None:
        """Start a relay per actor (re-attaching the `attached` jobs they hold) and the
        thread that adds actors for nodes that join."""
        with self._lock:
            actors = list(self._actors.values())
        for info in actors:
            self._relay(info, address, context, stop, info.job if info.job in attached else None)
        keeper = threading.Thread(
            target=self._keep,
            args=(address, context, stop),
            name="boxdream-ray-keeper",
            daemon=True,
        )
        keeper.start()
        self._threads.append(keeper)

    def _relay(
        self,
        info: ActorInfo,
        address: str,
        context: zmq.Context,
        stop: threading.Event,
        attached: str | None,
    ) -> None:
        relay = RayRelay(
            info, address=address, limits=self._limits, context=context, attached=attached
        )
        thread = threading.Thread(
            target=self._serve,
            args=(relay, info.name, stop),
            name=f"boxdream-{info.name}",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)

    def _serve(self, relay: RayRelay, name: str, stop: threading.Event) -> None:
        relay.run(stop)
        if not stop.is_set():
            log.error("worker %s on %s has gone", name, relay.device)
            with self._lock:
                self._actors.pop(name, None)

    def _keep(self, address: str, context: zmq.Context, stop: threading.Event) -> None:
        from ray.exceptions import RayError

        while not stop.wait(KEEP_INTERVAL_S):
            try:
                for info in self.refresh():
                    if not stop.is_set():
                        self._relay(info, address, context, stop, None)
            except (RayError, ConnectionError) as exc:
                log.warning("could not look for new Ray nodes: %s", exc)

    def stop(self, timeout_s: float) -> list[str]:
        """Wait for the relays to end (after `stop` is set); leave the cluster if `connect`
        joined it. The actors and their jobs go on. Returns threads still busy."""
        stuck = []
        for thread in self._threads:
            thread.join(timeout_s)
            if thread.is_alive():
                stuck.append(thread.name)
        self._threads = []
        if self._connected and not stuck:
            import ray

            ray.shutdown()
            self._connected = False
        return stuck

    def actors(self) -> list[ActorInfo]:
        """The worker actors known now."""
        with self._lock:
            return list(self._actors.values())

    # ------------------------------------------------------------------------- placement

    def refusal(self, needs: Needs) -> ProtocolError | None:
        """Why no worker can run a job with `needs`: no host has its model, or no GPU with
        the model has the memory; None if one can."""
        actors = self.actors()
        having = [info for info in actors if needs.model in info.models]
        if not having:
            hosts = len({info.host for info in actors})
            return ProtocolError(
                ErrorCode.UNKNOWN_MODEL,
                "model",
                f"model: no host of the Ray pool has {needs.model} ({len(actors)} workers on "
                f"{hosts} hosts); put the checkpoint at that path on a GPU host",
            )
        if any(self._has_memory(info, needs) for info in having):
            return None
        largest = max(info.memory_gib or 0.0 for info in having)
        return ProtocolError(
            ErrorCode.TOO_LARGE,
            "preset",
            f"preset: {needs.method} {needs.preset} with {needs.model} needs about "
            f"{memory_estimate_gib(needs):g} GiB of GPU memory; the largest GPU with that "
            f"model has {largest:.0f} GiB (choose a smaller preset)",
        )

    def fits(self, worker: str, needs: Needs) -> bool:
        """Whether worker `worker` has the model and the memory for `needs`."""
        with self._lock:
            info = self._actors.get(worker)
        return info is not None and needs.model in info.models and self._has_memory(info, needs)

    @staticmethod
    def _has_memory(info: ActorInfo, needs: Needs) -> bool:
        return info.memory_gib is None or info.memory_gib >= memory_estimate_gib(needs)
