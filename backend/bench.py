"""`boxdream bench`: per-step cost of each distillation method and of the export, on this
machine, with the built-in model (or `--model`, or a full-size published architecture with
random weights: `--architecture sd-2.1`). Each method runs in its own process so peak memory
figures do not mix. A step is split into render, encode (VAE), U-Net, LoRA (VSD), backward
and optimiser. Each method is also timed on the reference render path (`RenderConfig.skip_empty`
off: every ray sampled across the whole cube) in the same run, so the speed-up of empty-space
skipping is a ratio measured side by side. Speed goals are checked here, not in timed tests."""

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

from backend.pipelines.catalogue import ARCHITECTURES, METHODS
from protocol.messages import PRECISIONS

WARMUP_STEPS = 3
ARCHITECTURE_WARMUP_STEPS = 1
"""Warm-up steps before timing a full-size architecture (a CPU step takes many seconds)."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(
    method: str,
    steps: int,
    preset_name: str,
    model: str | None,
    device: str,
    precision: str = "auto",
    architecture: str | None = None,
    reference: bool = False,
) -> dict:
    """Run `steps` optimisation steps (+ warm-up) and one export; return the figures. `model`
    is the CLIP for method "clip" (None: tiny-clip). reference: render on the reference path
    (no empty-space skipping)."""
    import torch

    from backend.export.export_field import ExportTimings, export_field, to_glb
    from backend.guidance.architectures import BUILDERS
    from backend.guidance.precision import resolve_precision
    from backend.pipelines.distill_loop import LoopState
    from backend.pipelines.generate import optimise_prompt_field
    from backend.pipelines.presets import preset_config
    from backend.pipelines.runner import load_guide, resolve_device, run_config
    from protocol.messages import GenerateRequest

    torch_device = resolve_device(device)
    if architecture is None:
        prior = load_guide(method, model, torch_device, precision)
        warmup = WARMUP_STEPS
        preset = run_config(preset_name, method, prior)
    else:
        prior = BUILDERS[architecture](torch_device, resolve_precision(precision, torch_device))
        warmup = ARCHITECTURE_WARMUP_STEPS
        preset = preset_config(preset_name, method, prior.family)
    preset_steps = preset.steps
    config = replace(preset, steps=steps + warmup)
    config = replace(
        config, preview_every=0, render=replace(config.render, skip_empty=not reference)
    )
    request = GenerateRequest(prompt="a red cube", method=method, preset=preset_name)
    state = LoopState()
    times: list[float] = []
    loop = optimise_prompt_field(request, prior, config, lambda: False, state)
    tick = time.perf_counter()
    warm: dict[str, float] = {}
    try:
        while True:
            next(loop)
            now = time.perf_counter()
            times.append(now - tick)
            tick = now
            if state.step == warmup:
                warm = dict(state.section_ms)
    except StopIteration as done:
        field = done.value
    measured = times[warmup:]
    timings = ExportTimings()
    mesh = export_field(
        field, config.export, config.face_budget, config.texture_size, timings=timings
    )
    to_glb(mesh, timings=timings)
    step_ms = 1000 * sum(measured) / len(measured)
    sections = {k: (v - warm.get(k, 0.0)) / steps for k, v in state.section_ms.items()}
    return {
        "method": method,
        "path": "reference" if reference else "fast",
        "preset": preset_name,
        "model": architecture or model or ("tiny-clip" if method == "clip" else "tiny-shapes"),
        "precision": prior.precision,
        "device": str(torch_device),
        "views x res": f"{config.views} x {config.resolution}^2",
        "samples/ray": config.render.coarse_samples + config.render.fine_samples,
        "grid": config.grid.resolution,
        "step_ms": step_ms,
        "render_fwd_bwd_ms": sections["render"] + sections["backward"] + sections["optimiser"],
        "guidance_ms": sum(
            v for k, v in sections.items() if k not in ("render", "backward", "optimiser")
        ),
        "section_ms": sections,
        "steps_per_s": 1000.0 / step_ms,
        "preset_steps": preset_steps,
        "export_ms": timings.total_ms,
        "export_faces": int(mesh.faces.shape[0]),
        "peak_rss_mb": _peak_rss_mb(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else None,
    }


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _run_estimate_s(row: dict) -> float:
    """Seconds of a whole run of the preset at the measured step cost, plus the export."""
    return row["preset_steps"] * row["step_ms"] / 1000 + row["export_ms"] / 1000


def _sections_table(rows: list[dict]) -> str:
    """A step split into its parts, with peak memory (the architecture bench)."""
    header = ["method", "precision", "views x res", "render ms", "VAE encode ms", "U-Net ms"]
    header += ["LoRA ms", "backward ms", "optimiser ms", "step ms", "preset run (est.)"]
    header += ["peak memory MB"]
    cells = []
    for r in rows:
        part = r["section_ms"]
        on_gpu = r["peak_cuda_mb"] is not None
        memory = f"{r['peak_cuda_mb'] if on_gpu else r['peak_rss_mb']:.0f}"
        parts = ("render", "encode", "guidance", "lora", "backward", "optimiser")
        cells.append(
            [
                r["method"],
                r["precision"],
                r["views x res"],
                *(f"{part.get(k, 0.0):.0f}" for k in parts),
                f"{r['step_ms']:.0f}",
                f"{_run_estimate_s(r) / 60:.1f} min ({r['preset_steps']} steps)",
                f"{memory} ({'CUDA max allocated' if on_gpu else 'RSS'})",
            ]
        )
    return _markdown(header, cells)


def _table(rows: list[dict], baselines: list[dict] | None = None) -> str:
    """Step cost, its render and guidance parts, the export and peak RSS per method; with
    `baselines` (the same methods on the reference path, same run) also their step and render
    costs and the ratios fast / reference."""
    header = ["method", "views x res", "step ms", "render fwd+bwd ms", "guidance ms", "steps/s"]
    if baselines:
        header[3:3] = ["reference step ms", "step ratio"]
        header[6:6] = ["reference render ms", "render ratio"]
    header += ["preset run (est.)", "export ms", "peak RSS MB"]
    cells = []
    for i, r in enumerate(rows):
        row = [
            r["method"],
            r["views x res"],
            f"{r['step_ms']:.0f}",
            f"{r['render_fwd_bwd_ms']:.0f}",
            f"{r['guidance_ms']:.0f}",
            f"{r['steps_per_s']:.2f}",
            f"{_run_estimate_s(r):.0f} s ({r['preset_steps']} steps)",
            f"{r['export_ms']:.0f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        if baselines:
            base = baselines[i]
            row[3:3] = [f"{base['step_ms']:.0f}", f"{r['step_ms'] / base['step_ms']:.2f}x"]
            render_ratio = r["render_fwd_bwd_ms"] / base["render_fwd_bwd_ms"]
            row[6:6] = [f"{base['render_fwd_bwd_ms']:.0f}", f"{render_ratio:.2f}x"]
        cells.append(row)
    return _markdown(header, cells)


def _measure_apart(args: argparse.Namespace, method: str, reference: bool) -> dict | None:
    """`measure` in a process of its own (so peak memory figures do not mix); None (after an
    error line) when it failed."""
    cmd = [sys.executable, "-m", "backend.bench", "--one", method, "--steps", str(args.steps)]
    cmd += ["--preset", args.preset, "--device", args.device, "--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", args.model]
    if args.clip:
        cmd += ["--clip", args.clip]
    if args.architecture:
        cmd += ["--architecture", args.architecture]
    if reference:
        cmd += ["--reference"]
    cmd += ["--precision", args.precision]
    path = "reference path" if reference else "fast path"
    print(f"measuring {method} ({path}) ...", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"boxdream: error: bench {method}: {last}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args: argparse.Namespace | None = None) -> int:
    """Entry point of `boxdream bench` (also `python -m backend.bench`)."""
    if args is None:
        args = build_parser().parse_args()
    import torch

    if args.preset is None:
        args.preset = "standard" if args.architecture else "preview"
    if args.quality:
        from backend.quality_table import main as quality_main

        return quality_main(args)
    if args.one:
        torch.set_num_threads(args.threads)
        figures = measure(
            args.one,
            args.steps,
            args.preset,
            args.clip if args.one == "clip" else args.model,
            args.device,
            args.precision,
            args.architecture,
            args.reference,
        )
        print(json.dumps(figures))
        return 0
    default_methods = [m for m in METHODS if not (args.architecture and m == "clip")]
    methods = (args.methods or ",".join(default_methods)).split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"boxdream: error: methods: {unknown} not in {list(METHODS)}", file=sys.stderr)
        return 2
    rows, baselines = [], []
    side_by_side = args.baseline and not args.architecture
    for method in methods:
        for reference in (True, False) if side_by_side else (False,):
            row = _measure_apart(args, method, reference)
            if row is None:
                return 1
            (baselines if reference else rows).append(row)
    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, bench used {args.threads} torch threads, "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )
    model = args.architecture or args.model or "tiny-shapes"
    if "clip" in methods:
        model += f" (clip: {args.clip or 'tiny-clip'})"
    weights = " (random weights)" if args.architecture else ""
    print(f"model: {model}{weights}, preset {args.preset}, {args.steps} timed steps")
    print(_sections_table(rows) if args.architecture else _table(rows, baselines))
    if args.json:
        print(json.dumps(baselines + rows))
    return 0


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of `boxdream bench` (shared with the CLI)."""
    parser = parser or argparse.ArgumentParser(prog="boxdream bench", description=__doc__)
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated methods (default: {','.join(METHODS)}; no clip with --architecture)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=24,
        help="timed steps per method (measured: 8 read up to 45%% slower than 24 on 2 cores)",
    )
    parser.add_argument("--preset", default=None, help="preview (standard with --architecture)")
    parser.add_argument("--model", default=None, help="diffusion model (sds, vsd, sjc)")
    parser.add_argument("--clip", default=None, help="CLIP of method clip (default tiny-clip)")
    parser.add_argument(
        "--quality",
        action="store_true",
        help="instead of speed: run every method on a fixed prompt set and print the CLIP "
        "score and R-precision of each result (boxdream score)",
    )
    parser.add_argument(
        "--prompts",
        default=None,
        help="--quality: semicolon-separated prompts (default: the README's five)",
    )
    parser.add_argument("--seed", type=int, default=0, help="--quality: seed of every run")
    parser.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default=None,
        help="a full-size published architecture with random weights (no download)",
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time each method on the reference render path and print the ratios "
        "(default on; not with --architecture, whose table splits the step instead)",
    )
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
