"""`boxdream bench`: per-step cost of each distillation method and of the export, on this
machine, with the built-in model (or `--model`). Each method runs in its own process so peak
memory figures do not mix. Speed goals are checked here, not in timed tests."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace

from backend.pipelines.catalogue import METHODS

WARMUP_STEPS = 3


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(method: str, steps: int, preset: str, model: str | None, device: str) -> dict:
    """Run `steps` optimisation steps (+ warm-up) and one export; return the figures."""
    import torch

    from backend.export.export_field import ExportTimings, export_field, to_glb
    from backend.pipelines.distill_loop import LoopState
    from backend.pipelines.generate import optimise_prompt_field
    from backend.pipelines.presets import preset_config
    from backend.pipelines.runner import load_prior, resolve_device
    from protocol.messages import GenerateRequest

    torch_device = resolve_device(device)
    prior = load_prior(model, torch_device)
    config = preset_config(preset, method, on_gpu=torch_device.type == "cuda")
    config = replace(config, steps=steps + WARMUP_STEPS, preview_every=0)
    request = GenerateRequest(prompt="a red cube", method=method, preset=preset)
    state = LoopState()
    times: list[float] = []
    loop = optimise_prompt_field(request, prior, config, lambda: False, state)
    tick = time.perf_counter()
    warm_render = warm_guidance = 0.0
    try:
        while True:
            next(loop)
            now = time.perf_counter()
            times.append(now - tick)
            tick = now
            if state.step == WARMUP_STEPS:
                warm_render, warm_guidance = state.render_ms, state.guidance_ms
    except StopIteration as done:
        field = done.value
    measured = times[WARMUP_STEPS:]
    timings = ExportTimings()
    mesh = export_field(
        field, config.export, config.face_budget, config.texture_size, timings=timings
    )
    to_glb(mesh, timings=timings)
    step_ms = 1000 * sum(measured) / len(measured)
    return {
        "method": method,
        "preset": preset,
        "device": str(torch_device),
        "views x res": f"{config.views} x {config.resolution}^2",
        "samples/ray": config.render.coarse_samples + config.render.fine_samples,
        "grid": config.grid.resolution,
        "step_ms": step_ms,
        "render_fwd_bwd_ms": (state.render_ms - warm_render) / steps,
        "guidance_ms": (state.guidance_ms - warm_guidance) / steps,
        "steps_per_s": 1000.0 / step_ms,
        "preset_steps": preset_config(preset, method, torch_device.type == "cuda").steps,
        "export_ms": timings.total_ms,
        "export_faces": int(mesh.faces.shape[0]),
        "peak_rss_mb": _peak_rss_mb(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else None,
    }


def _table(rows: list[dict]) -> str:
    header = (
        "| method | views x res | step ms | render fwd+bwd ms | guidance ms | steps/s | "
        "preset run (est.) | export ms | peak RSS MB |"
    )
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        run_s = r["preset_steps"] * r["step_ms"] / 1000 + r["export_ms"] / 1000
        lines.append(
            f"| {r['method']} | {r['views x res']} | {r['step_ms']:.0f} | "
            f"{r['render_fwd_bwd_ms']:.0f} | {r['guidance_ms']:.0f} | {r['steps_per_s']:.2f} | "
            f"{run_s:.0f} s ({r['preset_steps']} steps) | {r['export_ms']:.0f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace | None = None) -> int:
    """Entry point of `boxdream bench` (also `python -m backend.bench`)."""
    if args is None:
        args = build_parser().parse_args()
    import torch

    if args.one:
        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.one, args.steps, args.preset, args.model, args.device)))
        return 0
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"boxdream: error: methods: {unknown} not in {list(METHODS)}", file=sys.stderr)
        return 2
    rows = []
    for method in methods:
        cmd = [
            sys.executable,
            "-m",
            "backend.bench",
            "--one",
            method,
            "--steps",
            str(args.steps),
            "--preset",
            args.preset,
            "--device",
            args.device,
            "--threads",
            str(args.threads),
        ]
        if args.model:
            cmd += ["--model", args.model]
        print(f"measuring {method} ...", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"boxdream: error: bench {method}: {last}", file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, bench used {args.threads} torch threads, "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )
    print(f"model: {args.model or 'tiny-shapes'}, preset {args.preset}, {args.steps} timed steps")
    print(_table(rows))
    if args.json:
        print(json.dumps(rows))
    return 0


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of `boxdream bench` (shared with the CLI)."""
    parser = parser or argparse.ArgumentParser(prog="boxdream bench", description=__doc__)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    parser.add_argument(
        "--steps",
        type=int,
        default=24,
        help="timed steps per method (measured: 8 read up to 45%% slower than 24 on 2 cores)",
    )
    parser.add_argument("--preset", default="preview")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
