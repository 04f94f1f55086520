"""`boxdream bench --quality`: every method on a fixed prompt set, each result scored by CLIP
(`backend.scoring.clip_score`: CLIP score and R-precision against the built-in world's
distractors), so that method and preset changes compare by a number, as in DreamFusion's
table. Each run is the full preset, in this process, from one seed."""

from __future__ import annotations

import argparse
import time

from backend.pipelines.catalogue import METHODS

QUALITY_PROMPTS = (
    "a red cube",
    "a blue sphere",
    "a yellow cone",
    "a green torus",
    "a purple cylinder",
)
"""The README's five prompts."""


def score_run(
    method: str, prompt: str, preset: str, seed: int, clip_name: str | None, device: str
) -> dict:
    """Generate `prompt` under `method` (full preset) and score the mesh with the CLIP."""
    from backend.export.glb import read_glb
    from backend.pipelines.runner import load_clip, resolve_device, run_job
    from backend.scoring.clip_score import score_meshes
    from protocol.messages import GenerateRequest, Result

    request = GenerateRequest(prompt=prompt, method=method, preset=preset, seed=seed)
    start = time.perf_counter()
    events = list(run_job(request, device=device, model=None, should_cancel=lambda: False))
    seconds = time.perf_counter() - start
    result = events[-1]
    if not isinstance(result, Result):
        raise RuntimeError(f"{method} {prompt!r}: the run ended without a result ({result!r})")
    clip = load_clip(clip_name, resolve_device(device))
    score = score_meshes(clip, read_glb(result.meshes[0].glb), prompt)
    return {
        "method": method,
        "prompt": prompt,
        "clip_score": score.score,
        "r_precision": score.r_precision,
        "seconds": seconds,
    }


def quality_table(rows: list[dict]) -> str:
    """Markdown: one line per method, R-precision and CLIP score per prompt and their means."""
    prompts = list(dict.fromkeys(r["prompt"] for r in rows))
    header = ["method", *prompts, "mean R-precision", "mean CLIP score", "run s (mean)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        cells = [
            f"{r['r_precision']:.2f} / {r['clip_score']:.3f}"
            for prompt in prompts
            for r in mine
            if r["prompt"] == prompt
        ]
        n = len(mine)
        lines.append(
            "| "
            + " | ".join(
                [
                    method,
                    *cells,
                    f"{sum(r['r_precision'] for r in mine) / n:.2f}",
                    f"{sum(r['clip_score'] for r in mine) / n:.3f}",
                    f"{sum(r['seconds'] for r in mine) / n:.0f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the table for `args.methods` (default: all) and `args.prompts`."""
    import json

    import torch

    torch.set_num_threads(args.threads)
    methods = (args.methods or ",".join(METHODS)).split(",")
    prompts = args.prompts.split(";") if args.prompts else list(QUALITY_PROMPTS)
    rows = []
    for method in methods:
        for prompt in prompts:
            print(f"{method}: {prompt!r} ...", flush=True)
            rows.append(score_run(method, prompt, args.preset, args.seed, args.clip, args.device))
    clip = args.clip or "tiny-clip"
    print(f"R-precision / CLIP score ({clip}), preset {args.preset}, seed {args.seed}")
    print(quality_table(rows))
    if args.json:
        print(json.dumps(rows))
    return 0
