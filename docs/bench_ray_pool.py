"""The Ray pool's goals, measured on this machine (docs/cluster.md has the figures).

    python docs/bench_ray_pool.py [--jobs 10]

1. Per-job overhead of the Ray path over the local path, side by side in one run: the same
   short jobs (the scripted pipeline double of the tests: 5 steps of 10 ms) submitted one at a
   time to a local server (one worker process, as `boxdream serve` runs it) and to a Ray-pool
   server on a two-node local cluster; times from submit to the first progress event and from
   the last step's progress event to the result.
2. The same cluster, 8 short jobs at once: which nodes ran them.
3. 8 jobs at once again, the non-head node killed while it runs one: every job's result
   arrives (the lost job runs again on the other node).

Everything stays on 127.0.0.1 (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, checked).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
sys.path.insert(0, str(REPO))

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from protocol.client import Client  # noqa: E402
from protocol.messages import Event, GenerateRequest, JobWarning, Progress, Result  # noqa: E402
from tests.backend.server.doubles import running_server  # noqa: E402

SHORT = "steps=5 step_ms=10"


def timed_job(client: Client, prompt: str) -> tuple[float, float]:
    """(submit to first progress, last step to result) of one job, in seconds."""
    marks: dict[str, float] = {}

    def note(event: Event) -> None:
        now = time.perf_counter()
        if isinstance(event, Progress):
            marks.setdefault("first", now)
            if event.step == event.total:
                marks["last"] = now
        elif isinstance(event, Result):
            marks["result"] = now

    started = time.perf_counter()
    client.wait(client.submit(GenerateRequest(prompt=prompt)), on_event=note, timeout_s=60)
    return marks["first"] - started, marks["result"] - marks["last"]


def overhead(address: str, jobs: int) -> list[tuple[float, float]]:
    """Per-job times on the server at `address` (after one warm-up job)."""
    with Client(address) as client:
        timed_job(client, f"warm-up {SHORT}")
        return [timed_job(client, f"job {index} {SHORT}") for index in range(jobs)]


def workers_of(jobs_dir: Path, job: str) -> list[str]:
    """The workers a job was started on, in order."""
    lines = (jobs_dir / job / "events.jsonl").read_text().splitlines()
    messages = [json.loads(line).get("message", "") for line in lines]
    return [message.split()[2] for message in messages if message.startswith("on worker ")]


def batch(address: str, jobs_dir: Path, prompt: str, kill: Cluster | None = None) -> dict:
    """8 jobs at once; with `kill`, its worker node is removed once its job runs."""
    with Client(address) as client:
        started = time.perf_counter()
        jobs = [client.submit(GenerateRequest(prompt=f"{prompt} {index}")) for index in range(8)]
        killed_at = None
        if kill is not None:
            (node,) = kill.worker_nodes
            doomed = node.node_id[:12]
            while not any(
                (jobs_dir / job / "events.jsonl").exists()
                and any(doomed in name for name in workers_of(jobs_dir, job))
                for job in jobs
            ):
                time.sleep(0.05)
            time.sleep(0.5)
            kill.remove_node(node)
            killed_at = time.perf_counter() - started
        done, warnings = 0, 0
        for job in jobs:
            seen: list[Event] = []
            client.wait(job, on_event=seen.append, timeout_s=120)
            done += 1
            warnings += any(isinstance(event, JobWarning) for event in seen)
        elapsed = time.perf_counter() - started
    nodes = {name.split("-")[2] for job in jobs for name in workers_of(jobs_dir, job)}
    return {
        "results": done,
        "retried": warnings,
        "nodes used": len(nodes),
        "killed at s": killed_at,
        "wall s": round(elapsed, 2),
    }


def summary(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.0f} ms (max {max(times) * 1000:.0f})"


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10, help="timed jobs per path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        with running_server(root / "local", devices=("cpu",), worker_processes=True) as server:
            local = overhead(server.address, args.jobs)
        started = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
        try:
            cluster.add_node(num_cpus=1, num_gpus=1)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, log_to_driver=False)
            addresses = {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}
            assert addresses == {"127.0.0.1"}, addresses
            print(f"two-node cluster on 127.0.0.1 up in {time.perf_counter() - started:.1f} s")
            with running_server(root / "ray", ray=cluster.address) as server:
                print(f"front end with {len(server.pool.actors())} workers ready")
                remote = overhead(server.address, args.jobs)
                spread = batch(server.address, root / "ray", "steps=10 step_ms=100")
                killed = batch(server.address, root / "ray", "steps=20 step_ms=100", cluster)
        finally:
            ray.shutdown()
            cluster.shutdown()
    print(f"\n{args.jobs} jobs each ({SHORT}), median (max):\n")
    print("| path | submit to first progress | last step to result |")
    print("|---|---|---|")
    for name, times in (("local worker process", local), ("Ray pool, 2 nodes", remote)):
        firsts, lasts = zip(*times, strict=True)
        print(f"| {name} | {summary(list(firsts))} | {summary(list(lasts))} |")
    print(f"\n8 jobs (steps=10 step_ms=100): {spread}")
    print(f"8 jobs (steps=20 step_ms=100), worker node killed: {killed}")


if __name__ == "__main__":
    main()
