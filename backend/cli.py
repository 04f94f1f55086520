"""The `boxdream` command: serve, generate, compose, edit, keys, info, bench.

Job commands run in-process without `--server`, or on that server with it; the output is the
same either way: a progress line on stderr (or `--json`: one event per line on stdout) and the
result files. Any error is one line on stderr ("boxdream: error: ...") and a non-zero exit.
The pipelines (torch) are imported only when a command needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import zmq

from backend import __version__
from backend.pipelines.catalogue import METHODS, PRESETS
from protocol.client import Client
from protocol.curve import CurveKeys
from protocol.errors import ProtocolError, ServerUnreachable
from protocol.fields import FieldReader, as_bool, as_list, as_text, join
from protocol.frames import check_job_id, header_summary, new_job_id
from protocol.glb import inspect_glb
from protocol.limits import Limits
from protocol.messages import (
    EDIT_MODES,
    IDENTITY,
    MAX_PARTICLES,
    PRECISIONS,
    TERMINAL_STATES,
    Accepted,
    ComposeRequest,
    EditRequest,
    Event,
    GenerateRequest,
    JobKind,
    JobRequest,
    JobStatus,
    JobSummary,
    JobWarning,
    MeshInput,
    Progress,
    PromptBox,
    Result,
    ServerInfo,
    validate,
)

SCENE_FILE_KEYS = {"yaw_deg": "yaw"}
"""Box fields whose key differs in a scene file (docs/scene-schema.md) from the wire."""
DEFAULT_BIND = "tcp://127.0.0.1:5555"
DEFAULT_JOBS_DIR = Path(".jobs")
PLAIN_INTERVAL_S = 5.0
"""Without a terminal, a progress line at most this often (and at each new stage)."""
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class CliError(Exception):
    """A problem to report as one line and exit code 1."""


class UsageError(CliError):
    """Bad command-line arguments: exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors turned into one-line `UsageError`s."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ------------------------------------------------------------------------------ output


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def progress_line(event: Progress, width: int) -> str:
    """One terminal line for a progress event: stage, step/total, bar, loss and ETA."""
    fraction = event.step / event.total
    bar_width = 20
    filled = round(fraction * bar_width)
    parts = [
        f"{event.stage} {event.step}/{event.total}",
        f"[{'#' * filled}{'-' * (bar_width - filled)}] {fraction:4.0%}",
    ]
    if event.loss is not None:
        parts.append(f"loss {event.loss:.4g}")
    if event.eta_s is not None:
        parts.append(f"ETA {_duration(event.eta_s)}")
    return "  ".join(parts)[: max(width - 1, 20)]


class ProgressView:
    """Shows a job's events: a progress line on stderr, or one JSON line per event."""

    def __init__(self, *, json_lines: bool, err: TextIO, out: TextIO) -> None:
        self._json = json_lines
        self._err = err
        self._out = out
        self._tty = err.isatty()
        self._line_open = False
        self._stage: str | None = None
        self._last_plain = 0.0

    def show(self, event: Event) -> None:
        """Render one event (the result is rendered by `finish`, after writing files; errors
        and cancellation are raised by the caller and reported by `main`)."""
        if isinstance(event, Result):
            return
        if self._json:
            self._print_json(header_summary(event.to_wire()))
        elif isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, Accepted):
            self._say(f"job {event.job} accepted (queue position {event.queue_position})")
        elif isinstance(event, JobWarning):
            self._say(f"warning: {event.message}")

    def finish(self, result: Result, files: list[Path]) -> None:
        """Report the written files."""
        if self._json:
            line = header_summary(result.to_wire())
            line["files"] = [str(path) for path in files]
            self._print_json(line)
        else:
            self._say("wrote " + ", ".join(str(path) for path in files))

    def close_line(self) -> None:
        """End an open `\\r` progress line (before an error message)."""
        if self._line_open:
            self._err.write("\n")
            self._err.flush()
            self._line_open = False

    def _print_json(self, line: dict[str, Any]) -> None:
        self._out.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._out.flush()

    def _say(self, text: str) -> None:
        self.close_line()
        self._err.write(f"boxdream: {text}\n")
        self._err.flush()

    def _progress(self, event: Progress) -> None:
        width = shutil.get_terminal_size().columns
        line = progress_line(event, width)
        if self._tty:
            self._err.write("\r" + line.ljust(width - 1))
            self._err.flush()
            self._line_open = True
            return
        now = time.monotonic()
        if (
            event.stage != self._stage
            or event.step == event.total
            or now - self._last_plain >= PLAIN_INTERVAL_S
        ):
            self._stage = event.stage
            self._last_plain = now
            self._err.write(line + "\n")
            self._err.flush()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "mesh"


def check_output(path: Path, *, folder: bool) -> None:
    """Fail before any work unless `path` can be written: its parent is an existing,
    writable folder, and it is not a folder (a file output) or not a file (`folder`)."""
    parent = path.parent
    if not parent.is_dir():
        raise CliError(
            f"-o {path}: {parent} {'is not a folder' if parent.exists() else 'does not exist'}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CliError(f"-o {path}: folder {parent} is not writable")
    if folder and path.exists() and not path.is_dir():
        raise CliError(f"-o {path}: is a file; give a folder for the scene")
    if not folder and path.is_dir():
        raise CliError(f"-o {path}: is a folder; give a file name, e.g. {path / 'out.glb'}")


def write_meshes(result: Result, output: Path) -> list[Path]:
    """Write a generate or edit result: the first mesh to `output`, any others (VSD particles)
    beside it as `<stem>_<mesh name>.glb`."""
    files = [output]
    output.write_bytes(result.meshes[0].glb)
    for mesh in result.meshes[1:]:
        path = output.with_name(f"{output.stem}_{_safe_name(mesh.name)}{output.suffix or '.glb'}")
        while path in files:
            path = path.with_name(f"{path.stem}_{len(files)}{path.suffix}")
        path.write_bytes(mesh.glb)
        files.append(path)
    return files


def write_scene(result: Result, output_dir: Path) -> list[Path]:
    """Write OUT_DIR/<name>.glb per mesh and OUT_DIR/scene.json with names and transforms."""
    output_dir.mkdir(exist_ok=True)
    files: list[Path] = []
    entries = []
    for mesh in result.meshes:
        stem, counter = _safe_name(mesh.name), 2
        while output_dir / f"{stem}.glb" in files:
            stem, counter = f"{_safe_name(mesh.name)}_{counter}", counter + 1
        path = output_dir / f"{stem}.glb"
        path.write_bytes(mesh.glb)
        files.append(path)
        entries.append({"name": mesh.name, "file": path.name, "transform": list(mesh.transform)})
    scene = output_dir / "scene.json"
    scene.write_text(json.dumps({"job": result.job, "meshes": entries}, indent=2) + "\n")
    return [*files, scene]


# ------------------------------------------------------------------------ job requests


def _runner() -> ModuleType:
    """The pipelines' entry module, imported on first use (it imports torch)."""
    try:
        return importlib.import_module("backend.pipelines.runner")
    except ImportError as exc:
        raise CliError(f"the pipelines are not available in this installation ({exc})") from exc


def read_scene(path: Path, args: argparse.Namespace) -> ComposeRequest:
    """Build a compose request from SCENE.json and the command-line options."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CliError(f"{path}: not valid JSON ({exc})") from exc
    try:
        reader = FieldReader(data)
        boxes_value, boxes_path = reader.take("boxes")
        limits = Limits()
        boxes = [
            PromptBox.from_fields(item, join(boxes_path, index), limits, SCENE_FILE_KEYS)
            for index, item in enumerate(as_list(boxes_value, boxes_path, 1, limits.max_boxes))
        ]
        scene_value, scene_path = reader.get("scene_prompt", None)
        negative_value, negative_path = reader.get("negative_prompt", "")
        background_value, background_path = reader.get("include_background", False)
        reader.finish()
        request = ComposeRequest(
            boxes=boxes,
            scene_prompt=None if scene_value is None else as_text(scene_value, scene_path, 10_000),
            negative_prompt=args.negative
            if args.negative is not None
            else as_text(negative_value, negative_path, 10_000, min_chars=0),
            include_background=as_bool(background_value, background_path),
            **_sampling(args),
        )
        validate(request, Limits())
    except ProtocolError as error:
        raise CliError(f"{path}: {error.message}") from error
    return request


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "method": args.method,
        "preset": args.preset,
        "seed": args.seed,
        "model": args.model,
        "precision": args.precision,
    }


def _parse_region(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 6:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not six comma-separated numbers x0,y0,z0,x1,y1,z1"
        )
    return values


def _particles(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PARTICLES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number in 1..{MAX_PARTICLES}")
    return value


def _parse_devices(text: str) -> tuple[str, ...]:
    devices = tuple(part.strip() for part in text.split(","))
    for device in devices:
        if not _DEVICE.fullmatch(device):
            raise argparse.ArgumentTypeError(f"{device!r} is not auto, cpu, cuda or cuda:N")
    return devices


def _retries(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,2}", text):
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number in 0..99")
    return int(text)


def _parse_seed(text: str) -> int:
    """A seed, 0..max_seed; checked on the text, as a 5,000-digit number does not convert."""
    limit = Limits().max_seed
    if not re.fullmatch(r"[0-9]+", text):
        raise argparse.ArgumentTypeError(f"invalid int value: {text[:40]!r}")
    if len(text) > len(str(limit)) or int(text) > limit:
        shown = text if len(text) <= 20 else f"a {len(text)}-digit number"
        raise argparse.ArgumentTypeError(f"{shown} is outside 0..{limit}")
    return int(text)


def run_local(
    args: argparse.Namespace, request: JobRequest, show: Callable[[Event], None]
) -> Result:
    """Run the job in this process and return its result."""
    limits = Limits()
    validate(request, limits)
    runner = _runner()
    job = new_job_id()
    show(Accepted(job=job, queue_position=0))
    options = {} if args.max_steps is None else {"max_steps": args.max_steps}
    if args.device is not None and len(args.device) > 1:
        raise UsageError("--device: an in-process run uses one device")
    device = args.device[0] if args.device else "auto"
    try:
        events = runner.run_job(
            request, device=device, model=None, should_cancel=lambda: False, **options
        )
        for event in events:
            event = replace(event, job=job)
            try:
                validate(event, limits)
            except ProtocolError as error:
                raise CliError(
                    f"internal error: the pipeline produced an invalid {event.TYPE} event: "
                    f"{error.message}"
                ) from error
            show(event)
            if isinstance(event, Result):
                return event
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    raise CliError("the pipeline ended without a result")


def _curve(args: argparse.Namespace) -> CurveKeys | None:
    if args.curve is None:
        return None
    try:
        return CurveKeys.from_dir(args.curve)
    except (OSError, ValueError) as exc:
        raise CliError(f"--curve {args.curve}: cannot read the client keys ({exc})") from exc


def run_remote(
    args: argparse.Namespace, request: JobRequest, show: Callable[[Event], None]
) -> Result:
    """Submit the job to `--server` and follow it to its result."""
    with Client(
        args.server, curve=_curve(args), client_name=f"boxdream-cli {__version__}"
    ) as client:
        job = client.submit(request)
        try:
            return client.wait(job, on_event=show)
        except KeyboardInterrupt:
            with contextlib.suppress(ProtocolError, ServerUnreachable):
                client.cancel(job)
            raise


def run_job_command(
    args: argparse.Namespace,
    request: JobRequest,
    write: Callable[[Result], list[Path]],
) -> int:
    """Run a job locally or remotely, show its events, write its result."""
    check_output(args.output, folder=args.command == "compose")
    if args.server is not None:
        for option, value in (("--device", args.device), ("--max-steps", args.max_steps)):
            if value is not None:
                raise UsageError(f"{option}: applies to in-process runs, not with --server")
    view = ProgressView(json_lines=args.json, err=sys.stderr, out=sys.stdout)
    try:
        run = run_remote if args.server is not None else run_local
        result = run(args, request, view.show)
        files = write(result)
    finally:
        view.close_line()
    view.finish(result, files)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """`boxdream generate PROMPT -o OUT.glb`."""
    request = GenerateRequest(
        prompt=args.prompt,
        negative_prompt=args.negative or "",
        particles=args.particles,
        **_sampling(args),
    )
    return run_job_command(args, request, functools.partial(write_meshes, output=args.output))


def cmd_compose(args: argparse.Namespace) -> int:
    """`boxdream compose SCENE.json -o OUT_DIR`."""
    request = read_scene(args.scene, args)
    return run_job_command(args, request, functools.partial(write_scene, output_dir=args.output))


def cmd_edit(args: argparse.Namespace) -> int:
    """`boxdream edit IN.glb PROMPT -o OUT.glb`."""
    glb = args.input.read_bytes()
    inspect_glb(glb, str(args.input))
    mesh = MeshInput(name=_safe_name(args.input.stem), glb=glb, transform=IDENTITY)
    request = EditRequest(
        meshes=[mesh],
        prompt=args.prompt,
        mode=args.mode,
        region=args.region,
        negative_prompt=args.negative or "",
        **_sampling(args),
    )
    return run_job_command(args, request, functools.partial(write_meshes, output=args.output))


# --------------------------------------------------------------------- other commands


def _wait_for_signal() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        return


def _server_side(args: argparse.Namespace) -> tuple[ModuleType, tuple[str, ...], dict[str, Any]]:
    """The runner, the resolved devices and the info fields; checks every device."""
    runner = _runner()
    devices = args.device or ("auto",)
    try:
        fields = [
            runner.server_info_fields(device, args.model, args.precision) for device in devices
        ]
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if devices == ("auto",):
        devices = (str(fields[0]["device"]),)
    return runner, devices, fields[0]


def _jobs_group(name: str | None) -> int | None:
    from backend.server.access import group_id

    try:
        return None if name is None else group_id(name)
    except KeyError as exc:
        raise UsageError(f"--jobs-group: {exc.args[0]}") from exc


def cmd_serve(args: argparse.Namespace) -> int:
    """`boxdream serve`: the job server until SIGINT or SIGTERM; its jobs run on local
    worker processes, or with `--ray` on a Ray cluster's worker actors."""
    from backend.server.service import Server, ServerConfig

    jobs_group = _jobs_group(args.jobs_group)
    if args.ray is not None and args.device is not None:
        raise UsageError("--device: not with --ray (every GPU of the pool gets a worker)")

    logging.basicConfig(level=logging.INFO, format="boxdream: %(message)s", stream=sys.stderr)
    runner, devices, info_fields = _server_side(args)
    options: dict[str, Any] = {"precision": args.precision}
    if args.max_steps is not None:
        options["max_steps"] = args.max_steps
    pipeline = functools.partial(runner.run_job, **options)
    config = ServerConfig(
        jobs_dir=args.jobs_dir,
        bind=args.bind,
        devices=devices,
        model=args.model,
        curve_dir=args.curve,
        ray=args.ray,
        retries=args.retries,
        max_queued=args.max_queued,
        worker_processes=True,
        jobs_group=jobs_group,
    )
    server = Server(config, pipeline=pipeline, info_fields=info_fields)
    try:
        server.start()
    except (OSError, ValueError, RuntimeError) as exc:
        raise CliError(f"cannot start the server: {exc}") from exc
    except zmq.ZMQError as exc:
        raise CliError(f"cannot listen on {args.bind}: {exc}") from exc
    try:
        _wait_for_signal()
    finally:
        server.stop()
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """`boxdream keys DIR`: CURVE key pairs."""
    from backend.server.security import make_keys

    try:
        files = make_keys(args.dir, client=args.client)
    except FileExistsError as exc:
        raise CliError(str(exc)) from exc
    print(f"server key pair:   {files.server_secret}  (keep on the server)")
    print(f"server public key: {files.server_public}  (give to every client)")
    print(f"client key pair:   {files.client_secret}  (give to client {args.client!r})")
    print(f"admitted client:   {files.client_public}  (delete to revoke; restart the server)")
    print(f"serve with:        boxdream serve --curve {args.dir} ...")
    return 0


def describe_info(info: ServerInfo, where: str) -> str:
    """A human-readable hello reply."""
    limits = info.limits
    lines = [
        f"BoxDream {info.server_version} (protocol {info.protocol_version}), {where}",
        f"device:  {info.device}",
        "models:  "
        + ", ".join(f"{m} (default)" if m == info.default_model else m for m in info.models),
        "methods: " + "; ".join(f"{m}: {', '.join(info.presets[m])}" for m in info.methods),
        f"limits:  prompt {limits.max_prompt_chars} characters, {limits.max_boxes} boxes "
        f"(inside ±{limits.scene_bound:g} m, edges {limits.min_box_size:g}-"
        f"{limits.max_box_size:g} m), {limits.max_meshes} meshes of "
        f"{limits.max_mesh_bytes // 2**20} MiB and {limits.max_faces} triangles",
    ]
    settings = info.model_settings or {}
    if settings:
        lines.append(
            f"model:   {settings.get('model')}, family {settings.get('family')}, "
            f"precision {settings.get('precision')}"
        )
        for method, presets in (settings.get("presets") or {}).items():
            shown = "; ".join(
                f"{name} {v.get('steps')} steps x {v.get('views')} views at "
                f"{v.get('resolution')} px, guidance {v.get('guidance_scale'):g}"
                for name, v in presets.items()
            )
            lines.append(f"  {method}: {shown}")
    for key, value in (info.vocabulary or {}).items():
        shown = ", ".join(value) if isinstance(value, list) else json.dumps(value)
        lines.append(f"{key}: {shown}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    """`boxdream info`: what a server, or this machine in-process, offers."""
    if args.server is not None:
        with Client(args.server, curve=_curve(args)) as client:
            info, where = client.hello(), f"server at {args.server}"
    else:
        from backend.server.service import build_server_info

        _, devices, fields = _server_side(args)
        info, where = build_server_info(fields, devices, None, Limits()), "in-process"
    if args.json:
        print(json.dumps(header_summary(info.to_wire()), ensure_ascii=False))
    else:
        print(describe_info(info, where))
    return 0


def _client(args: argparse.Namespace) -> Client:
    return Client(args.server, curve=_curve(args), client_name=f"boxdream-cli {__version__}")


def _job_line(summary: JobSummary, status: JobStatus | None, now: float) -> dict[str, Any]:
    """One job of `boxdream jobs`: its summary, its progress while unfinished, its age."""
    line: dict[str, Any] = {**summary.to_fields(), "age_s": round(now - summary.created_at, 1)}
    if status is not None:
        line |= {
            "queue_position": status.queue_position,
            "stage": status.stage,
            "step": status.step,
            "total": status.total,
        }
    return line


def _progress_text(line: dict[str, Any]) -> str:
    if line.get("queue_position") is not None:
        return f"queue position {line['queue_position']}"
    if line.get("total"):
        return f"{line['stage']} {line['step']}/{line['total']}"
    return ""


def cmd_jobs(args: argparse.Namespace) -> int:
    """`boxdream jobs`: a server's newest jobs with state, progress and age."""
    lines = []
    with _client(args) as client:
        for summary in client.list_jobs(args.limit):
            unfinished = summary.state not in TERMINAL_STATES
            status = client.status(summary.job) if unfinished else None
            lines.append(_job_line(summary, status, time.time()))
    for line in lines:
        if args.json:
            print(json.dumps(line, ensure_ascii=False))
        else:
            print(
                f"{line['job']}  {line['kind']:<8}  {line['state']:<11}  "
                f"{_progress_text(line):<20}  {_duration(line['age_s']):>6}  {line['title']}"
            )
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """`boxdream fetch JOB_ID -o OUT`: collect a job's result, following it if unfinished."""
    job = check_job_id(args.job, "JOB_ID")
    check_output(args.output, folder=False)
    view = ProgressView(json_lines=args.json, err=sys.stderr, out=sys.stdout)
    with _client(args) as client:
        compose = client.status(job).kind == JobKind.COMPOSE
        if compose:
            check_output(args.output, folder=True)
        try:
            result = client.wait(job, on_event=view.show)
        finally:
            view.close_line()
    write = write_scene if compose else write_meshes
    view.finish(result, write(result, args.output))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """`boxdream score RESULT.glb PROMPT`: CLIP score and R-precision of a result."""
    from backend.export.errors import MeshError
    from backend.export.glb import read_glb
    from backend.guidance.clip_model import ClipModel
    from backend.pipelines.runner import resolve_device
    from backend.scoring.clip_score import score_meshes
    from protocol.errors import FieldError

    if args.views < 1:
        raise UsageError(f"--views: at least 1, got {args.views}")
    try:
        meshes = read_glb(args.input.read_bytes())
        device = resolve_device(args.device[0] if args.device else "auto")
        clip = ClipModel.load(args.clip, device=device)
    except (MeshError, FieldError) as exc:
        raise CliError(f"{args.input if isinstance(exc, MeshError) else '--clip'}: {exc}") from exc
    result = score_meshes(clip, meshes, args.prompt, views=args.views)
    if args.json:
        line = {
            "file": str(args.input),
            "prompt": args.prompt,
            "clip": args.clip or "tiny-clip",
            "clip_score": round(result.score, 4),
            "r_precision": round(result.r_precision, 4),
            "views": result.views,
            "distractors": result.distractors,
            "best_captions": list(result.best_captions),
        }
        print(json.dumps(line, ensure_ascii=False))
    else:
        print(
            f"{args.input}: CLIP score {result.score:.3f}, R-precision {result.r_precision:.2f} "
            f"({result.views} views, {result.distractors} distractors, "
            f"{args.clip or 'tiny-clip'})"
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """`boxdream bench ...`: handed to `backend.bench`."""
    from backend import bench

    return int(bench.main(args) or 0)


# ------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `boxdream` command."""
    parser = _Parser(prog="boxdream", description="Text to textured 3D meshes.")
    parser.add_argument("--version", action="version", version=f"boxdream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    job = _Parser(add_help=False)
    job.add_argument(
        "--method",
        choices=METHODS,
        default="sds",
        help="score distillation (sds, vsd, sjc) or CLIP guidance (clip: --model names a CLIP)",
    )
    job.add_argument("--preset", choices=PRESETS, default="preview", help="quality preset")
    job.add_argument("--model", help="model name (or path, in-process) instead of the default")
    job.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="precision of the prior (auto: bf16/fp16 on CUDA; bf16 on a CPU with it, else fp32)",
    )
    job.add_argument("--seed", type=_parse_seed, default=0, help="random seed")
    job.add_argument("--negative", help="negative prompt: what to avoid")
    job.add_argument("--device", type=_parse_devices, help="auto, cpu, cuda, cuda:N (in-process)")
    job.add_argument("--max-steps", type=int, help="cap the optimisation steps (in-process)")
    job.add_argument("--server", metavar="ADDR", help="run on this server, e.g. tcp://gpu-box:5555")
    job.add_argument("--curve", type=Path, metavar="DIR", help="client keys folder for CURVE")
    job.add_argument("--json", action="store_true", help="one JSON event per line on stdout")

    generate = commands.add_parser("generate", parents=[job], help="one mesh from a prompt")
    generate.add_argument("prompt")
    generate.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.glb")
    generate.add_argument(
        "--particles",
        type=_particles,
        default=1,
        metavar="N",
        help=f"N results from one prompt, 1..{MAX_PARTICLES} (vsd: they share its LoRA); "
        "the others are written beside OUT as OUT_<name>_pK.glb",
    )
    generate.set_defaults(handler=cmd_generate)

    compose = commands.add_parser("compose", parents=[job], help="a scene from prompt boxes")
    compose.add_argument("scene", type=Path, metavar="SCENE.json")
    compose.add_argument("-o", "--output", type=Path, required=True, metavar="OUT_DIR")
    compose.set_defaults(handler=cmd_compose)

    edit = commands.add_parser("edit", parents=[job], help="repaint or reshape a mesh")
    edit.add_argument("input", type=Path, metavar="IN.glb")
    edit.add_argument("prompt")
    edit.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.glb")
    edit.add_argument("--mode", choices=EDIT_MODES, default="texture")
    edit.add_argument(
        "--region",
        type=_parse_region,
        metavar="x0,y0,z0,x1,y1,z1",
        help="world box to confine the edit (write --region=-1,... for negative numbers)",
    )
    edit.set_defaults(handler=cmd_edit)

    serve = commands.add_parser("serve", help="run the job server")
    serve.add_argument("--bind", default=DEFAULT_BIND, metavar="ADDR")
    serve.add_argument("--jobs-dir", type=Path, default=DEFAULT_JOBS_DIR, metavar="DIR")
    serve.add_argument("--curve", type=Path, metavar="DIR", help="keys folder: require CURVE")
    serve.add_argument(
        "--device", type=_parse_devices, help="cpu, or cuda:0,cuda:1 (one worker each)"
    )
    serve.add_argument("--model", help="default model name or path")
    serve.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="precision of the prior for requests that ask for auto",
    )
    serve.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="run jobs on a Ray cluster: auto (the one this host joined) or the head's address "
        "(docs/cluster.md); needs the cluster extra",
    )
    serve.add_argument(
        "--retries",
        type=_retries,
        default=1,
        metavar="N",
        help="--ray: runs again of a job whose worker or host died (default 1)",
    )
    serve.add_argument("--max-steps", type=int, help="cap every job's optimisation steps")
    serve.add_argument("--max-queued", type=int, default=100, help="queue length before refusing")
    serve.add_argument(
        "--jobs-group", metavar="GROUP", help="group that may read the jobs (default: only you)"
    )
    serve.set_defaults(handler=cmd_serve)

    keys = commands.add_parser("keys", help="make CURVE certificates")
    keys.add_argument("dir", type=Path, metavar="DIR")
    keys.add_argument("--client", default="client", help="name of the client key pair")
    keys.set_defaults(handler=cmd_keys)

    info = commands.add_parser("info", help="what a server (or this machine) offers")
    info.add_argument("--server", metavar="ADDR")
    info.add_argument("--curve", type=Path, metavar="DIR")
    info.add_argument("--device", type=_parse_devices)
    info.add_argument("--model", help="describe this model (name or path) in-process")
    info.add_argument("--precision", choices=PRECISIONS, default="auto")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=cmd_info)

    jobs = commands.add_parser("jobs", help="a server's newest jobs: state, progress, age")
    jobs.add_argument("--server", default=DEFAULT_BIND, metavar="ADDR")
    jobs.add_argument("--curve", type=Path, metavar="DIR", help="client keys folder for CURVE")
    jobs.add_argument("--limit", type=int, default=20, help="how many jobs, newest first")
    jobs.add_argument("--json", action="store_true", help="one JSON line per job")
    jobs.set_defaults(handler=cmd_jobs)

    fetch = commands.add_parser("fetch", help="collect a job's result (waits if unfinished)")
    fetch.add_argument("job", metavar="JOB_ID")
    fetch.add_argument("-o", "--output", type=Path, required=True, metavar="OUT")
    fetch.add_argument("--server", default=DEFAULT_BIND, metavar="ADDR")
    fetch.add_argument("--curve", type=Path, metavar="DIR", help="client keys folder for CURVE")
    fetch.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    fetch.set_defaults(handler=cmd_fetch)

    score = commands.add_parser("score", help="CLIP score and R-precision of a result")
    score.add_argument("input", type=Path, metavar="RESULT.glb")
    score.add_argument("prompt")
    score.add_argument(
        "--clip", metavar="NAME_OR_PATH", help="CLIP folder or hub id (default: tiny-clip)"
    )
    score.add_argument("--views", type=int, default=8, help="rendered views (default 8)")
    score.add_argument("--device", type=_parse_devices, help="auto, cpu, cuda, cuda:N")
    score.add_argument("--json", action="store_true", help="one JSON line on stdout")
    score.set_defaults(handler=cmd_score)

    from backend.bench import build_parser as build_bench_parser

    bench = commands.add_parser("bench", help="speed benchmarks")
    build_bench_parser(bench)
    bench.set_defaults(handler=cmd_bench)
    return parser


def _os_error(exc: OSError) -> str:
    if exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code (the console script exits with it)."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    except UsageError as exc:
        message, code = str(exc), EXIT_USAGE
    except CliError as exc:
        message, code = str(exc), EXIT_ERROR
    except ProtocolError as exc:
        message, code = exc.message, EXIT_ERROR
    except ServerUnreachable as exc:
        message, code = exc.message, EXIT_ERROR
    except KeyboardInterrupt:
        message, code = "interrupted", EXIT_INTERRUPTED
    except OSError as exc:
        message, code = _os_error(exc), EXIT_ERROR
    except Exception as exc:
        if os.environ.get("BOXDREAM_TRACEBACK"):
            raise
        message, code = f"internal error: {type(exc).__name__}: {exc}", EXIT_ERROR
    print(f"boxdream: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
