"""The jobs dir: layout, atomic writes, recovery after a crash."""

from __future__ import annotations

import errno
import itertools
import json
import os
import stat
from pathlib import Path
from unittest import mock

import pytest

from backend.server.access import Access
from backend.server.jobstore import JobStore, StorageError
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
from tests.backend.server.faults import Crash, CrashAt
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
    store.commit_result(job, result, result.to_wire())
    assert store.record(job).state == "done"
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


def _running_job(store: JobStore) -> tuple[str, Result]:
    job = new_job_id()
    store.create(GenerateRequest(prompt="cube", job=job))
    store.set_state(job, JobState.RUNNING)
    meshes = [ResultMesh(name=f"m{i}", glb=make_glb(i + 1), transform=IDENTITY) for i in range(2)]
    return job, Result(meshes=meshes, job=job)


def test_a_crash_at_any_step_of_the_result_commit_recovers_to_done_or_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result whose result.json was renamed into place is done after a restart, fetchable;
    before that the job is interrupted with no partial file left."""
    outcomes = []
    for step in itertools.count():
        store = JobStore(tmp_path / f"jobs{step}", Limits())
        job, result = _running_job(store)
        with monkeypatch.context() as patch:
            crash = CrashAt(patch, step)
            try:
                store.commit_result(job, result, result.to_wire())
                finished = True
            except Crash:
                finished = False
        reopened = JobStore(store.root, Limits())
        reopened.recover()
        state = reopened.record(job).state
        outcomes.append(state)
        assert state == ("done" if crash.committed else "interrupted"), f"crash at step {step}"
        names = {path.name for path in (store.root / job).iterdir()}
        if crash.committed:
            assert reopened.load_result(job) == result
        else:
            assert not {name for name in names if name.startswith("result")}
        assert not {name for name in names if name.endswith(".tmp")}
        if finished:
            break
    interrupted = outcomes.count("interrupted")
    assert interrupted >= 9 and outcomes == ["interrupted"] * interrupted + ["done"] * (
        len(outcomes) - interrupted
    )


def test_a_full_disk_leaves_no_partial_result_and_names_folder_and_cause(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, result = _running_job(store)
    real_replace = os.replace

    def full(source: Path, target: Path) -> None:
        if Path(target).name == "result.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(source))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StorageError) as caught:
        store.commit_result(job, result, result.to_wire())
    assert caught.value.message == (
        f"jobs folder {store.root}: disk full (No space left on device) while storing the result"
    )
    assert sorted(path.name for path in (store.root / job).iterdir()) == [
        "events.jsonl",
        "request.json",
        "status.json",
    ]


def test_a_state_that_cannot_be_written_is_kept_until_a_restart(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, _ = _running_job(store)
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(Access, "open_file", mock.Mock(side_effect=read_only))
    error = Error(code="internal", field="", message="it broke", job=job)
    with pytest.raises(StorageError, match="read-only"):
        store.set_state(job, JobState.FAILED, error)
    assert store.record(job).state == "failed" and store.record(job).error_event() == error
    assert [record.state for record in store.list(5)] == ["failed"]
    assert JobStore(store.root, Limits()).record(job).state == "running"


def test_jobs_are_private_unless_shared_with_a_group(tmp_path: Path) -> None:
    def modes(store: JobStore) -> set[tuple[str, int]]:
        job, result = _running_job(store)
        store.commit_result(job, result, result.to_wire())
        paths = [store.root, *store.root.rglob("*")]
        return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in paths}

    assert modes(JobStore(tmp_path / "private", Limits())) == {("dir", 0o700), ("file", 0o600)}
    shared = JobStore(tmp_path / "shared", Limits(), Access(group=os.getgid()))
    assert modes(shared) == {("dir", 0o2750), ("file", 0o640)}
    assert {path.stat().st_gid for path in shared.root.rglob("*")} == {os.getgid()}
