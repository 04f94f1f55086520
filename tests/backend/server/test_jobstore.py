"""The jobs dir: layout, atomic writes, recovery after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.server.jobstore import JobStore
from protocol.errors import ProtocolError
from protocol.frames import new_job_id
from protocol.limits import Limits
from protocol.messages import (
    IDENTITY,
    EditRequest,
    Error,
    GenerateRequest,
    JobState,
    MeshInput,
    Progress,
    Result,
    ResultMesh,
)
from tests.protocol.samples import make_glb


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs", Limits())


def test_request_with_blobs_round_trips(store: JobStore) -> None:
    job = new_job_id()
    request = EditRequest(
        meshes=[MeshInput(name="Cube", glb=make_glb(3), transform=IDENTITY)],
        prompt="wooden",
        job=job,
    )
    record = store.create(request)
    assert (record.kind, record.state, record.title) == ("edit", "queued", "wooden")
    assert store.load_request(job) == request
    assert (store.root / job / "request.1.glb").read_bytes() == make_glb(3)
    assert store.exists(job) and not store.exists(new_job_id())


def test_result_files_and_event_log(store: JobStore) -> None:
    job = new_job_id()
    store.create(GenerateRequest(prompt="cube", job=job))
    progress = Progress(stage="s", step=1, total=2, loss=0.5, eta_s=1.0, job=job)
    store.append_event(job, progress.to_wire())
    result = Result(meshes=[ResultMesh(name="object", glb=make_glb(), transform=IDENTITY)], job=job)
    store.save_result(job, result)
    store.set_state(job, JobState.DONE)
    assert store.load_result(job) == result
    assert (store.root / job / "result.1.glb").read_bytes() == make_glb()
    lines = [
        json.loads(line) for line in (store.root / job / "events.jsonl").read_text().splitlines()
    ]
    assert lines[0]["type"] == "progress" and lines[0]["fields"]["step"] == 1
    assert lines[-1] == {"t": lines[-1]["t"], "type": "log", "message": "state done"}
    assert not list((store.root / job).glob(".*.tmp"))


def test_recover_marks_unfinished_jobs_interrupted(store: JobStore) -> None:
    queued, running, done = new_job_id(), new_job_id(), new_job_id()
    for job in (queued, running, done):
        store.create(GenerateRequest(prompt=job, job=job))
    store.set_state(running, JobState.RUNNING)
    store.set_state(done, JobState.DONE)
    (store.root / running / ".status.json.tmp").write_text("half written")
    (store.root / new_job_id()).mkdir()
    (store.root / running / "events.jsonl").open("a").write('{"t": 1, "type": "prog')
    reopened = JobStore(store.root, Limits())
    assert sorted(reopened.recover()) == sorted([queued, running])
    assert reopened.record(running).state == "interrupted"
    error = reopened.record(queued).error_event()
    assert isinstance(error, Error) and error.code == "interrupted" and error.job == queued
    assert reopened.record(done).state == "done"
    assert not (store.root / running / ".status.json.tmp").exists()
    assert reopened.recover() == []


def test_list_is_newest_first(store: JobStore) -> None:
    jobs = [new_job_id() for _ in range(3)]
    for job in jobs:
        store.create(GenerateRequest(prompt="p", job=job))
    assert [record.job for record in store.list(10)] == jobs[::-1]
    assert len(store.list(2)) == 2


def test_job_ids_cannot_escape_the_jobs_dir(store: JobStore) -> None:
    with pytest.raises(ProtocolError, match="not a job id"):
        store.exists("../../etc")
