"""The method matrix of issue 28: every shape the judge knows (one colour each) x seeds x
methods, one preview generate per cell through vsd_experiment.py, judged as the tests judge.

    PYTHONPATH=. python docs/research/method_matrix.py RESULTS.jsonl [--seeds 0 1 2]
        [--methods sds vsd sjc] [--threads 1]
    PYTHONPATH=. python docs/research/method_matrix.py RESULTS.jsonl --table

Each finished cell is appended to RESULTS.jsonl (with the commit it ran on), so an interrupted
matrix resumes where it stopped. `--table` prints the markdown table: judged colour and shape,
and the largest extent as a share of SDS's at the same prompt and seed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROMPTS = {
    "a red cube": ("red", "cube"),
    "a yellow sphere": ("yellow", "sphere"),
    "a green cone": ("green", "cone"),
    "a blue torus": ("blue", "torus"),
    "a purple cylinder": ("purple", "cylinder"),
}
EXTENT_BAND = (0.6, 1.0)
"""Largest extent as a share of SDS's at the same prompt and seed (issue 28's goal)."""
VOXEL = 2.0 / 64
"""One voxel of the 64^3 grid: the marching-cubes extent is quantised by it, so the band's upper
end is SDS's extent plus one voxel."""


def _done(path: Path) -> dict[tuple[str, str, int], dict]:
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["method"], r["prompt"], r["seed"]): r for r in records}


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip()


def run(path: Path, seeds: list[int], methods: list[str], threads: int) -> None:
    """Run every missing cell, row by row (all methods of one prompt and seed together)."""
    script = Path(__file__).with_name("vsd_experiment.py")
    for seed in seeds:
        for prompt in PROMPTS:
            for method in methods:
                if (method, prompt, seed) in _done(path):
                    continue
                cmd = [sys.executable, str(script), method, prompt, str(seed), str(threads)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    print(out.stderr[-2000:], file=sys.stderr)
                    continue
                record = json.loads(out.stdout.strip().splitlines()[-1])
                record["commit"] = _commit()
                with path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(method, prompt, seed, record["colour"], record["shape"], record["extent"])


def table(path: Path) -> str:
    """Markdown: one row per prompt and seed, one column per method; a cell is `ok` when the
    colour and shape are right and the extent is within EXTENT_BAND of SDS's."""
    done = _done(path)
    keys = sorted({(p, s) for _, p, s in done}, key=lambda k: (k[1], list(PROMPTS).index(k[0])))
    lines = ["| prompt | seed | SDS | VSD | SJC |", "|---|---|---|---|---|"]
    for prompt, seed in keys:
        sds = done.get(("sds", prompt, seed))
        cells = []
        for method in ("sds", "vsd", "sjc"):
            r = done.get((method, prompt, seed))
            if r is None:
                cells.append("")
                continue
            colour, shape = PROMPTS[prompt]
            right = r["colour"] == colour and r["shape"] == shape
            text = f"{r['colour']} {r['shape']}, {r['extent']:.2f}"
            if method != "sds" and sds is not None:
                share = r["extent"] / sds["extent"]
                low, high = EXTENT_BAND[0] * sds["extent"], EXTENT_BAND[1] * sds["extent"] + VOXEL
                right = right and low <= r["extent"] <= high
                text += f" = {share:.2f}"
            cells.append(("ok: " if right else "**no**: ") + text)
        lines.append(f"| {prompt} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["sds", "vsd", "sjc"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="print the table and stop")
    args = parser.parse_args()
    if args.table:
        print(table(args.results))
    else:
        run(args.results, args.seeds, args.methods, args.threads)


if __name__ == "__main__":
    main()
