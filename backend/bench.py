"""`boxdream bench`: per-step cost of each distillation method and of the export, on this
machine, with the built-in model (or `--model`, or a full-size published architecture with
random weights: `--architecture sd-2.1`). Each method runs in its own process so peak memory
figures do not mix. A step is split into render, encode (VAE), U-Net, LoRA (VSD), regularisers,
backward and optimiser; presets with stage 2 (the mesh refinement) get its step split too
(rasterise forward + backward, guidance, regularisers). Each method is also timed on the
reference render path, the render of 2026-12-06 (commit 9b3480e: grid lookups in one batch, no
empty-space skipping), in the same run, so today's speed-up is a ratio measured side by side.
`--surface` runs whole jobs of the preset and reports the exported surface's smoothness
(`backend.geometry.surface_angles`). Speed and surface goals are checked here, not in timed
tests."""

from __future__ import annotations

import argparse
import contextlib
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
    is the CLIP for method "clip" (None: tiny-clip). reference: the step of 2026-12-06 (commit
    9b3480e): no C kernels (`cpu_build.reference_path`: every grid lookup by `F.grid_sample`
    in one batch, the total variation in PyTorch), no empty-space skipping, Adam's
    per-parameter loop, and "auto" precision meaning fp32 on CPU as it did then; otherwise
    the preset's own render and precision. Both use today's jittered importance levels
    (sorting i.i.d. draws cost 3 ms more a step), so the ratios understate the speed-up by that
    much."""
    import torch

    from backend.cpu_build import reference_path
    from backend.export.export_field import ExportTimings, to_glb
    from backend.guidance.architectures import BUILDERS
    from backend.guidance.precision import resolve_precision
    from backend.pipelines.distill_loop import RENDER_SECTIONS, LoopState
    from backend.pipelines.generate import optimise_prompt_field
    from backend.pipelines.presets import preset_config
    from backend.pipelines.refine import export_optimised
    from backend.pipelines.runner import load_guide, resolve_device, run_config
    from protocol.messages import GenerateRequest

    torch_device = resolve_device(device)
    if reference and precision == "auto" and torch_device.type == "cpu":
        precision = "fp32"
    if architecture is None:
        prior = load_guide(method, model, torch_device, precision)
        warmup = WARMUP_STEPS
        preset_run = run_config(preset_name, method, prior)
    else:
        prior = BUILDERS[architecture](torch_device, resolve_precision(precision, torch_device))
        warmup = ARCHITECTURE_WARMUP_STEPS
        preset_run = preset_config(preset_name, method, prior.family)
    preset_steps = preset_run.steps
    config = replace(preset_run, steps=steps + warmup, preview_every=0)
    if reference:
        config = replace(config, render=replace(config.render, skip_empty=False), fused_adam=False)
    if config.refine is not None:
        config = replace(config, refine=replace(config.refine, steps=steps + warmup))
    request = GenerateRequest(prompt="a red cube", method=method, preset=preset_name)
    state, refine_state = LoopState(), LoopState()
    times: dict[str, list[float]] = {"optimise": [], "refine": []}
    loop = optimise_prompt_field(request, prior, config, lambda: False, state, refine_state)
    tick = time.perf_counter()
    warm: dict[str, dict[str, float]] = {}
    with reference_path() if reference else contextlib.nullcontext():
        try:
            while True:
                event = next(loop)
                now = time.perf_counter()
                times[event.stage].append(now - tick)
                tick = now
                running = state if event.stage == "optimise" else refine_state
                if running.step == warmup:
                    warm[event.stage] = dict(running.section_ms)
        except StopIteration as done:
            result = done.value
    timings = ExportTimings()
    mesh = export_optimised(result, config, timings=timings)
    to_glb(mesh, timings=timings)

    def per_step(stage: str, running: LoopState) -> tuple[float, dict[str, float]]:
        measured = times[stage][warmup:]
        before = warm.get(stage, {})
        return 1000 * sum(measured) / len(measured), {
            k: (v - before.get(k, 0.0)) / steps for k, v in running.section_ms.items()
        }

    step_ms, sections = per_step("optimise", state)
    refine = None
    if config.refine is not None:
        refine_ms, refine_sections = per_step("refine", refine_state)
        refine = {
            "views x res": f"{config.refine.views} x {config.refine.resolution}^2",
            "faces": config.refine.faces * 4**config.refine.subdivisions,
            "step_ms": refine_ms,
            "rasterise_fwd_bwd_ms": sum(refine_sections[k] for k in RENDER_SECTIONS),
            "guidance_ms": sum(
                v
                for k, v in refine_sections.items()
                if k not in RENDER_SECTIONS and k != "regularisers"
            ),
            "regularisers_ms": refine_sections["regularisers"],
            "section_ms": refine_sections,
            "preset_steps": preset_run.refine.steps,
        }
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
        # The volume's smoothing terms count with the render, as they did before they were
        # timed apart.
        "render_fwd_bwd_ms": sum(sections[k] for k in (*RENDER_SECTIONS, "regularisers")),
        "guidance_ms": sum(
            v for k, v in sections.items() if k not in (*RENDER_SECTIONS, "regularisers")
        ),
        "section_ms": sections,
        "steps_per_s": 1000.0 / step_ms,
        "preset_steps": preset_steps,
        "export_ms": timings.total_ms,
        "export_faces": int(mesh.faces.shape[0]),
        "refine": refine,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else None,
    }


SURFACE_PROMPTS = ("a blue sphere", "a yellow cone", "a green torus")
"""The prompts of the surface goal (issue 31): the median angle between neighbouring faces at
most 3 deg and the 90th percentile at most 10 deg at the standard preset."""


def measure_surface(
    prompt: str, method: str, preset: str, model: str | None, device: str, seed: int = 0
) -> dict:
    """One whole generate job: seconds per stage and the exported surface's angles."""
    import torch

    from backend.export.glb import read_glb
    from backend.geometry.surface_angles import surface_angles
    from backend.pipelines.generate import generate
    from backend.pipelines.presets import preset_config
    from backend.pipelines.runner import load_prior, resolve_device
    from protocol.messages import GenerateRequest, Progress, Result

    prior = load_prior(model, resolve_device(device))
    config = replace(preset_config(preset, method, prior.family), preview_every=0)
    request = GenerateRequest(prompt=prompt, method=method, preset=preset, seed=seed)
    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    result = None
    for event in generate(request, prior, config, lambda: False):
        now = time.perf_counter()
        stage = event.stage if isinstance(event, Progress) else "export"
        seconds[stage] = seconds.get(stage, 0.0) + now - tick
        tick = now
        if isinstance(event, Result):
            result = event
    (mesh,) = read_glb(result.meshes[0].glb)
    angles = surface_angles(mesh.vertices, mesh.faces)
    return {
        "prompt": prompt,
        "method": method,
        "preset": preset,
        "seed": seed,
        "seconds": seconds,
        "total_s": sum(seconds.values()),
        "median_deg": angles.median_deg,
        "p90_deg": angles.p90_deg,
        "faces": len(mesh.faces),
        "threads": torch.get_num_threads(),
    }


def _surface_table(rows: list[dict]) -> str:
    """Whole jobs: time per stage and the exported surface's neighbour angles."""
    header = ["prompt", "method", "stage 1 s", "stage 2 s", "export s", "total s"]
    header += ["median deg", "p90 deg", "faces"]
    cells = [
        [
            r["prompt"],
            r["method"],
            f"{r['seconds'].get('optimise', 0.0):.0f}",
            f"{r['seconds'].get('refine', 0.0):.0f}",
            f"{r['seconds'].get('export', 0.0):.0f}",
            f"{r['total_s']:.0f}",
            f"{r['median_deg']:.2f}",
            f"{r['p90_deg']:.2f}",
            str(r["faces"]),
        ]
        for r in rows
    ]
    return _markdown(header, cells)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _run_estimate_s(row: dict) -> float:
    """Seconds of a whole run of the preset at the measured step costs (stage 1, and stage 2
    when the preset has it), plus the export."""
    refine = row.get("refine")
    stage_2 = 0.0 if refine is None else refine["preset_steps"] * refine["step_ms"] / 1000
    return row["preset_steps"] * row["step_ms"] / 1000 + stage_2 + row["export_ms"] / 1000


def _refine_table(rows: list[dict]) -> str:
    """Stage 2's step split per method: rasterise forward + backward (with the optimiser
    update), guidance (U-Net, VSD's LoRA), the mesh regularisers' forward."""
    header = ["method", "stage 2 views x res", "faces", "step ms", "rasterise fwd+bwd ms"]
    header += ["guidance ms", "regularisers ms", "stage 2 run (est.)"]
    cells = []
    for r in rows:
        refine = r["refine"]
        if refine is None:
            continue
        run_s = refine["preset_steps"] * refine["step_ms"] / 1000
        cells.append(
            [
                r["method"],
                refine["views x res"],
                str(refine["faces"]),
                f"{refine['step_ms']:.0f}",
                f"{refine['rasterise_fwd_bwd_ms']:.0f}",
                f"{refine['guidance_ms']:.0f}",
                f"{refine['regularisers_ms']:.0f}",
                f"{run_s:.0f} s ({refine['preset_steps']} steps)",
            ]
        )
    return _markdown(header, cells)


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


def _best_round(rounds: list[dict]) -> dict:
    """Of one path's rounds, the one with the fastest step (other work on the machine only
    ever adds time), with the highest peak RSS of them all."""
    best = dict(min(rounds, key=lambda r: r["step_ms"]))
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rounds)
    best["rounds"] = len(rounds)
    return best


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
        args.preset = "standard" if args.architecture or args.surface else "preview"
    if args.quality:
        from backend.quality_table import main as quality_main

        return quality_main(args)
    if args.surface:
        torch.set_num_threads(args.threads)
        rows = [
            measure_surface(prompt, method, args.preset, args.model, args.device)
            for method in args.methods.split(",")
            for prompt in SURFACE_PROMPTS
        ]
        print(f"whole {args.preset} jobs, {args.threads} torch threads, seed 0")
        print(_surface_table(rows))
        if args.json:
            print(json.dumps(rows))
        return 0
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
    if args.rounds < 1:
        print(f"boxdream: error: rounds must be >= 1, got {args.rounds}", file=sys.stderr)
        return 2
    rows, baselines = [], []
    side_by_side = args.baseline and not args.architecture
    for method in methods:
        paths = (True, False) if side_by_side else (False,)
        measured: dict[bool, list[dict]] = {reference: [] for reference in paths}
        for _ in range(args.rounds):  # the paths alternate, so a slow spell hits both
            for reference in paths:
                row = _measure_apart(args, method, reference)
                if row is None:
                    return 1
                measured[reference].append(row)
        for reference, path_rows in measured.items():
            (baselines if reference else rows).append(_best_round(path_rows))
    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, bench used {args.threads} torch threads, "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )
    model = args.architecture or args.model or "tiny-shapes"
    if "clip" in methods:
        model += f" (clip: {args.clip or 'tiny-clip'})"
    weights = " (random weights)" if args.architecture else ""
    print(
        f"model: {model}{weights}, preset {args.preset}, {args.steps} timed steps, "
        f"fastest of {args.rounds} round(s) per path"
    )
    print(_sections_table(rows) if args.architecture else _table(rows, baselines))
    if any(row.get("refine") for row in rows):
        print("stage 2 (mesh refinement):")
        print(_refine_table(rows))
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
        help="also time each method on the reference render path (the render of 2026-12-06: "
        "one-batch grid lookups, no empty-space skipping) and print the ratios "
        "(default on; not with --architecture, whose table splits the step instead)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="measurements of each method and path, alternating between the paths; the "
        "fastest round of each counts (on a shared 2-core machine one round's ratios moved "
        "by up to 0.08x)",
    )
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--surface",
        action="store_true",
        help="run whole jobs of the preset (standard by default) for the surface-goal prompts "
        "and report the exported surface's neighbour angles (pass --methods sds for one method)",
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
