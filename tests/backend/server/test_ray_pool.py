"""The Ray pool (`serve --ray`) on a real two-node Ray cluster on loopback, with the scripted
pipeline in worker actors that fake one GPU each: spread, streamed progress, cancel, placement
by model, a front-end restart, a node killed mid-job.

One cluster serves the module (about 10 s to start on 2 cores); the test that kills a node
runs last.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from backend.server.service import Server, ServerConfig
from protocol.client import Client
from protocol.errors import ProtocolError
from protocol.messages import Event, GenerateRequest, JobWarning, Progress
from tests.backend.server.doubles import running_server
from tests.backend.server.test_restart import server_process, wait_for_step
from tests.protocol.samples import INFO_FIELDS

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[3]
ABSENT_MODEL = "/nonexistent/stable-diffusion-2-1-base"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and one more node on 127.0.0.1, one fake GPU each; this process is a driver."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
        try:
            cluster.add_node(num_cpus=1, num_gpus=1)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, log_to_driver=False)
            nodes = [node for node in ray.nodes() if node["Alive"]]
            assert len(nodes) == 2
            assert {node["NodeManagerAddress"] for node in nodes} == {"127.0.0.1"}
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def ray_server(jobs_dir: Path, cluster: Cluster, **options: object):  # type: ignore[no-untyped-def]
    info = {**INFO_FIELDS, "models": ["tiny-shapes", ABSENT_MODEL]}
    return running_server(jobs_dir, ray=cluster.address, info_fields=info, **options)


def wait_for_steps(client: Client, jobs: list[str], step: int) -> None:
    """Follow the events of `jobs` until each has reached `step`."""
    waiting, deadline = set(jobs), time.monotonic() + 30
    while waiting:
        assert time.monotonic() < deadline, f"jobs {waiting} never reached step {step}"
        for event in client.poll(100):
            if isinstance(event, Progress) and event.step >= step:
                waiting.discard(str(event.job))


def workers_of(jobs_dir: Path, job: str) -> list[str]:
    """The workers a job was started on, in order (from its events.jsonl)."""
    lines = (jobs_dir / job / "events.jsonl").read_text().splitlines()
    messages = [json.loads(line).get("message", "") for line in lines]
    return [message.split()[2] for message in messages if message.startswith("on worker ")]


def test_jobs_spread_over_both_nodes_with_progress_in_order(
    cluster: Cluster, tmp_path: Path
) -> None:
    jobs_dir = tmp_path / "jobs"
    with ray_server(jobs_dir, cluster) as server, Client(server.address) as client:
        assert server.info.device == "ray"
        assert {info.host.endswith("(127.0.0.1)") for info in server.pool.actors()} == {True}
        jobs = [
            client.submit(GenerateRequest(prompt=f"job{i} steps=6 step_ms=50")) for i in range(4)
        ]
        seen: dict[str, list[Event]] = {}
        for job in jobs:
            seen[job] = []
            result = client.wait(job, on_event=seen[job].append, timeout_s=60)
            assert result.meshes[0].name == "object"
            steps = [e.step for e in seen[job] if isinstance(e, Progress)]
            assert steps == sorted(steps) and steps[-1] == 6
        workers = {worker for job in jobs for worker in workers_of(jobs_dir, job)}
        assert len(workers) == 2, "both nodes' workers ran jobs"


def test_cancel_takes_effect_within_a_step(cluster: Cluster, tmp_path: Path) -> None:
    with ray_server(tmp_path / "jobs", cluster) as server, Client(server.address) as client:
        job = client.submit(GenerateRequest(prompt="long steps=500 step_ms=100"))
        wait_for_step(client, job, 3)
        client.cancel(job)
        later: list[Event] = []
        with pytest.raises(ProtocolError) as caught:
            client.wait(job, on_event=later.append, timeout_s=10)
        assert caught.value.code == "cancelled"
        in_flight = [e for e in later if isinstance(e, Progress)]
        assert len(in_flight) <= 4, "events in flight (one poll) plus at most one more step"
        assert client.status(job).state == "cancelled"


def test_a_model_no_host_has_is_refused_at_submit(cluster: Cluster, tmp_path: Path) -> None:
    with ray_server(tmp_path / "jobs", cluster) as server, Client(server.address) as client:
        with pytest.raises(ProtocolError) as caught:
            client.submit(GenerateRequest(prompt="a red cube", model=ABSENT_MODEL))
        assert caught.value.code == "unknown_model"
        assert f"no host of the Ray pool has {ABSENT_MODEL}" in caught.value.message
        assert client.list_jobs() == []


def test_a_front_end_restart_reattaches_running_jobs_and_keeps_the_queue(
    cluster: Cluster, tmp_path: Path
) -> None:
    """One job runs on across the restart, one ends while no front end runs (its worker
    keeps the result), one waits in the queue."""
    jobs_dir = tmp_path / "jobs"
    prompts = ("long steps=30 step_ms=100", "ends meanwhile steps=10 step_ms=100")
    with ray_server(jobs_dir, cluster) as server, Client(server.address) as client:
        running = [client.submit(GenerateRequest(prompt=prompt)) for prompt in prompts]
        queued = client.submit(GenerateRequest(prompt="queued steps=10 step_ms=100"))
        wait_for_steps(client, running, 3)
    time.sleep(1.0)
    with ray_server(jobs_dir, cluster) as server, Client(server.address) as client:
        assert client.status(running[0]).state == "running"
        assert client.status(queued).state in ("queued", "running")
        seen: list[Event] = []
        assert client.wait(running[0], on_event=seen.append, timeout_s=60).meshes
        steps = [e.step for e in seen if isinstance(e, Progress)]
        assert steps and steps[-1] == 30 and steps == sorted(steps)
        for job in (running[1], queued):
            assert client.wait(job, timeout_s=60).meshes
        assert all(len(workers_of(jobs_dir, job)) == 1 for job in running), "not run twice"


def test_a_killed_front_end_process_restarted_gets_the_result_of_its_running_job(
    cluster: Cluster, tmp_path: Path
) -> None:
    jobs_dir = tmp_path / "jobs"
    with (
        server_process(jobs_dir, ray=cluster.address) as (process, address, _),
        Client(address, timeout_s=2.0, retries=1) as client,
    ):
        job = client.submit(GenerateRequest(prompt="outlives steps=60 step_ms=100"))
        wait_for_step(client, job, 2)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    with (
        server_process(jobs_dir, ray=cluster.address) as (_, address, _),
        Client(address) as client,
    ):
        assert client.status(job).state == "running"
        seen: list[Event] = []
        assert client.wait(job, on_event=seen.append, timeout_s=60).meshes
        assert [e.step for e in seen if isinstance(e, Progress)][-1] == 60
        assert len(workers_of(jobs_dir, job)) == 1, "re-attached, not run again"


def test_workers_are_kept_between_front_ends_and_replaced_for_other_settings(
    cluster: Cluster, tmp_path: Path
) -> None:
    def pids(server: Server) -> set[int]:
        assert server.pool is not None
        return {ray.get(info.handle.describe.remote())["pid"] for info in server.pool.actors()}

    with ray_server(tmp_path / "jobs", cluster) as server:
        first = pids(server)
    with ray_server(tmp_path / "jobs", cluster) as server:
        assert pids(server) == first, "the same actors (and their loaded priors) serve again"
    with ray_server(tmp_path / "jobs", cluster, model="tiny-shapes") as server:
        assert len(pids(server)) == 2 and not pids(server) & first
        with Client(server.address) as client:
            assert client.wait(client.submit(GenerateRequest(prompt="steps=2")), timeout_s=30)


@pytest.mark.slow
def test_the_real_pipeline_runs_on_the_pool_and_keeps_its_prior_loaded(
    cluster: Cluster, tmp_path: Path
) -> None:
    from backend.pipelines import runner

    pipeline = functools.partial(runner.run_job, max_steps=2)
    config = ServerConfig(jobs_dir=tmp_path / "jobs", bind="tcp://127.0.0.1:*", ray=cluster.address)
    server = Server(config, pipeline=pipeline, info_fields=runner.server_info_fields("cpu"))
    server.start()
    try:
        with Client(server.address) as client:
            first_progress, jobs = [], []
            for prompt in ("a red cube", "a blue sphere", "a red sphere"):
                started = time.monotonic()
                jobs.append(client.submit(GenerateRequest(prompt=prompt)))
                wait_for_step(client, jobs[-1], 1)
                first_progress.append(time.monotonic() - started)
                result = client.wait(jobs[-1], timeout_s=120)
                assert result.meshes[0].glb[:4] == b"glTF"
    finally:
        server.stop()
    first, second, third = (workers_of(tmp_path / "jobs", job) for job in jobs)
    assert third == first != second, f"the longest-idle worker takes the next job: {jobs}"
    assert first_progress[2] < first_progress[0], f"a loaded prior is kept: {first_progress}"


@pytest.mark.slow
def test_a_node_killed_mid_job_retries_it_on_the_other_node(
    cluster: Cluster, tmp_path: Path
) -> None:
    jobs_dir = tmp_path / "jobs"
    (worker_node,) = cluster.worker_nodes
    doomed_prefix = worker_node.node_id[:12]
    with ray_server(jobs_dir, cluster) as server, Client(server.address) as client:
        jobs = [
            client.submit(GenerateRequest(prompt=f"steps=20 step_ms=150 {i}")) for i in range(2)
        ]
        wait_for_steps(client, jobs, 2)
        (doomed,) = [job for job in jobs if doomed_prefix in workers_of(jobs_dir, job)[0]]
        cluster.remove_node(worker_node)
        seen: list[Event] = []
        assert client.wait(doomed, on_event=seen.append, timeout_s=90).meshes
        assert client.wait(next(j for j in jobs if j != doomed), timeout_s=60).meshes
        warnings = [e.message for e in seen if isinstance(e, JobWarning)]
        assert any("retry 1 of 1" in message for message in warnings), warnings
        first, second = workers_of(jobs_dir, doomed)
        assert doomed_prefix in first and doomed_prefix not in second
