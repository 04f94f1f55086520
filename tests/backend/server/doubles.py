"""Test doubles for the server: a scripted pipeline and helpers to run a server with it.

The pipeline reads its behaviour from words in the prompt:
    steps=N      progress events (default 3)       step_ms=N   sleep per step (default 10)
    previews     a preview PNG at every step        preview_kb=N  pad previews to N KiB
    fail         raises ProtocolError bad_mesh      crash       raises RuntimeError
    nan          yields a NaN loss                  nores       ends without a result
Run as a script it serves on 127.0.0.1 (for kill-and-restart tests) and prints its address
and the process ids of its workers (`--processes N`), or runs its jobs on a Ray cluster
(`--ray ADDRESS`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from backend.server.service import Server, ServerConfig
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    IDENTITY,
    ComposeRequest,
    EditRequest,
    JobRequest,
    JobWarning,
    PipelineEvent,
    Preview,
    Progress,
    Result,
    ResultMesh,
)
from tests.protocol.samples import INFO_FIELDS, make_glb, make_png


class DoubleCancelled(Exception):
    """What the double raises on cancel (the real pipelines raise JobCancelled)."""


STARTED: list[str] = []
"""Job prompts the double has started, in order (same-process servers only)."""


def _number(prompt: str, key: str, default: int) -> int:
    match = re.search(rf"\b{key}=(\d+)", prompt)
    return int(match.group(1)) if match else default


def _prompt_of(request: JobRequest) -> str:
    if isinstance(request, ComposeRequest):
        return request.scene_prompt or request.boxes[0].prompt
    return request.prompt


def scripted_pipeline(
    request: JobRequest,
    *,
    device: str,
    model: str | None,
    should_cancel: Callable[[], bool],
) -> Iterator[PipelineEvent]:
    """A pipeline double following the prompt's script (see the module docstring)."""
    prompt = _prompt_of(request)
    STARTED.append(prompt)
    steps = _number(prompt, "steps", 3)
    step_s = _number(prompt, "step_ms", 10) / 1000.0
    padding = b"\x00" * (_number(prompt, "preview_kb", 0) * 1024)
    if "unknownword" in prompt:
        yield JobWarning(message="'unknownword' is not in the built-in model's vocabulary")
    for step in range(1, steps + 1):
        if should_cancel():
            raise DoubleCancelled
        time.sleep(step_s)
        if "crash" in prompt:
            raise RuntimeError("the double crashed")
        if "fail" in prompt:
            raise ProtocolError(
                ErrorCode.BAD_MESH, "meshes[0].glb", "meshes[0].glb: the double cannot read it"
            )
        loss = float("nan") if "nan" in prompt else 1.0 / step
        yield Progress(
            stage="optimise", step=step, total=steps, loss=loss, eta_s=(steps - step) * step_s
        )
        if "previews" in prompt or step == 1:
            yield Preview(step=step, png=make_png() + padding)
    if "nores" in prompt:
        return
    if isinstance(request, ComposeRequest):
        meshes = [
            ResultMesh(name=f"box{index}", glb=make_glb(index + 1), transform=IDENTITY)
            for index in range(len(request.boxes))
        ]
    elif isinstance(request, EditRequest):
        meshes = [ResultMesh(name=m.name, glb=m.glb, transform=m.transform) for m in request.meshes]
    else:
        meshes = [ResultMesh(name="object", glb=make_glb(), transform=IDENTITY)]
    yield Result(meshes=meshes)


def make_server(jobs_dir: Path, **options: object) -> Server:
    """A server with the scripted pipeline on a free loopback port (`info_fields` option:
    what it advertises, default `INFO_FIELDS`)."""
    info_fields = options.pop("info_fields", INFO_FIELDS)
    config = ServerConfig(jobs_dir=jobs_dir, bind="tcp://127.0.0.1:*", **options)  # type: ignore[arg-type]
    return Server(config, pipeline=scripted_pipeline, info_fields=info_fields)  # type: ignore[arg-type]


@contextlib.contextmanager
def running_server(jobs_dir: Path, **options: object) -> Iterator[Server]:
    """Start a scripted server; stop it on exit."""
    server = make_server(jobs_dir, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    """Serve until killed; print the bound address and the worker process ids on stdout."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs-dir", type=Path, required=True)
    parser.add_argument("--bind", default="tcp://127.0.0.1:*")
    parser.add_argument("--processes", type=int, default=0, help="worker processes, not a thread")
    parser.add_argument("--ray", help="run the jobs on this Ray cluster")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    config = ServerConfig(
        jobs_dir=args.jobs_dir,
        bind=args.bind,
        devices=("cpu",) * max(args.processes, 1),
        worker_processes=args.processes > 0,
        ray=args.ray,
    )
    server = Server(config, pipeline=scripted_pipeline, info_fields=INFO_FIELDS)
    server.start()
    print(server.address, *server.worker_pids, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
