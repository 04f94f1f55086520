"""The `boxdream` command: argument errors, one-line failures, local and remote runs."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.cli import main, progress_line, write_meshes
from backend.server.service import Server
from protocol.client import Client
from protocol.messages import IDENTITY, GenerateRequest, Progress, Result, ResultMesh
from tests.backend.server.doubles import running_server, scripted_pipeline
from tests.backend.server.test_restart import wait_for_step
from tests.protocol.samples import INFO_FIELDS, make_glb

pytestmark = pytest.mark.timeout(60)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("boxdream: error: ")
    assert "Traceback" not in err
    return lines[0].removeprefix("boxdream: error: ")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path / "jobs", devices=("cpu", "cpu")) as running:
        yield running


@pytest.fixture
def stub_runner(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The scripted pipeline in place of `backend.pipelines.runner` (in-process runs)."""
    stub = types.ModuleType("backend.pipelines.runner")

    def run_job(request: Any, *, device: str, model: str | None, should_cancel: Any) -> Any:
        return scripted_pipeline(request, device=device, model=model, should_cancel=should_cancel)

    stub.run_job = run_job  # type: ignore[attr-defined]
    stub.server_info_fields = lambda device, model=None, precision="auto": {  # type: ignore[attr-defined]
        **INFO_FIELDS,
        "device": "cpu",
    }
    monkeypatch.setitem(sys.modules, "backend.pipelines.runner", stub)
    return stub


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ((), "required: COMMAND"),
        (("generate",), "required: prompt, -o/--output"),
        (("generate", "a cube", "-o", "x.glb", "--method", "dreamfusion"), "invalid choice"),
        (("generate", "a cube", "-o", "x.glb", "--seed", "many"), "invalid int value"),
        (("generate", "a cube", "-o", "x.glb", "--device", "gpu"), "'gpu' is not auto, cpu"),
        (("edit", "in.glb", "x", "-o", "o.glb", "--region", "1,2,3"), "six comma-separated"),
        (("edit", "in.glb", "x", "-o", "o.glb", "--mode", "paint"), "invalid choice"),
        (("compose", "scene.json"), "required: -o/--output"),
        (
            (
                "generate",
                "a cube",
                "-o",
                "x.glb",
                "--server",
                "tcp://127.0.0.1:1",
                "--device",
                "cpu",
            ),
            "--device: applies to in-process runs",
        ),
        (("frobnicate",), "invalid choice"),
        (("serve", "--connect", "tcp://broker:5556"), "unrecognized arguments: --connect"),
        (("serve", "--worker-bind", "tcp://0.0.0.0:5556"), "unrecognized arguments"),
        (("serve", "--ray", "auto", "--device", "cpu"), "--device: not with --ray"),
        (("serve", "--ray", "auto", "--retries", "-1"), "'-1' is not a whole number in 0..99"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], fragment: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert fragment in one_error_line(err)


def test_prompt_too_long_names_the_field_and_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "generate", "x" * 412, "-o", "out.glb")
    assert code == 1
    assert one_error_line(err) == "prompt: 412 characters, limit is 300"


def test_missing_and_broken_input_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "edit", str(tmp_path / "none.glb"), "gold", "-o", "o.glb")
    assert code == 1 and "none.glb: No such file" in one_error_line(err)
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"not a mesh, just text")
    code, _, err = run(capsys, "edit", str(broken), "gold", "-o", "o.glb")
    assert code == 1 and one_error_line(err).startswith(f"{broken}: not a valid GLB file")


@pytest.mark.parametrize(
    ("scene", "fragment"),
    [
        ("{nope", "not valid JSON"),
        ('{"boxes": []}', "boxes: 0 items, needs at least 1"),
        ('{"boxes": [{"centre": [0, 0, 0], "size": [1, 1, 1]}]}', "boxes[0].prompt: missing"),
        (
            '{"boxes": [{"centre": [9.9, 0, 0], "size": [1, 1, 1], "prompt": "a"}]}',
            "boxes[0]: reaches x = 10.4 m, the scene bound is ±10 m",
        ),
        (
            '{"boxes": [{"centre": [0, 0, 0], "size": [1, 1, 1], "prompt": "a", "color": 1}]}',
            "boxes[0].color: unknown field",
        ),
        ('{"boxes": [{"centre": [0, 0], "size": [1, 1, 1], "prompt": "a"}]}', "3 numbers"),
    ],
)
def test_scene_file_errors_name_file_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, scene: str, fragment: str
) -> None:
    path = tmp_path / "scene.json"
    path.write_text(scene)
    code, _, err = run(capsys, "compose", str(path), "-o", str(tmp_path / "out"))
    assert code == 1
    message = one_error_line(err)
    assert message.startswith(f"{path}: ") and fragment in message


def test_pipelines_missing_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "backend.pipelines.runner", None)
    code, _, err = run(capsys, "generate", "a red cube", "-o", "out.glb")
    assert code == 1 and "pipelines are not available" in one_error_line(err)


def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "info", "--server", "tcp://127.0.0.1:1")
    assert code == 1 and "tcp://127.0.0.1:1" in one_error_line(err)


def test_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "keys", str(tmp_path / "keys"))
    assert code == 0 and "--curve" in out
    assert (tmp_path / "keys" / "clients" / "client.key").is_file()
    code, _, err = run(capsys, "keys", str(tmp_path / "keys"))
    assert code == 1 and "already has keys" in one_error_line(err)


def test_info_from_a_server(capsys: pytest.CaptureFixture[str], server: Server) -> None:
    code, out, _ = run(capsys, "info", "--server", server.address)
    assert code == 0 and "tiny-shapes (default)" in out and "sds: preview" in out
    code, out, _ = run(capsys, "info", "--server", server.address, "--json")
    line = json.loads(out)
    assert line["type"] == "server_info" and line["fields"]["device"] == "cpu,cpu"


def test_info_in_process(capsys: pytest.CaptureFixture[str], stub_runner: types.ModuleType) -> None:
    code, out, _ = run(capsys, "info")
    assert code == 0 and "in-process" in out and "device:  cpu" in out


def test_generate_remote_and_local_give_the_same_output(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    server: Server,
    stub_runner: types.ModuleType,
) -> None:
    outputs = {}
    for where, extra in (("remote", ["--server", server.address]), ("local", [])):
        target = tmp_path / where / "cube.glb"
        target.parent.mkdir()
        code, out, err = run(
            capsys, "generate", "a red cube steps=3", "-o", str(target), "--json", *extra
        )
        assert code == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        outputs[where] = [line["type"] for line in lines]
        assert lines[-1]["files"] == [str(target)]
        assert target.read_bytes() == make_glb()
        progress = [line["fields"]["step"] for line in lines if line["type"] == "progress"]
        assert progress == [1, 2, 3]
    assert outputs["remote"] == outputs["local"]
    assert outputs["local"][0] == "accepted" and outputs["local"][-1] == "result"


def test_progress_goes_to_stderr_without_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, stub_runner: types.ModuleType
) -> None:
    code, out, err = run(capsys, "generate", "a red cube steps=2", "-o", str(tmp_path / "c.glb"))
    assert code == 0 and out == ""
    assert "optimise 2/2" in err and "wrote" in err and "accepted" in err


def test_compose_remote_writes_meshes_and_scene(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, server: Server
) -> None:
    scene = tmp_path / "scene.json"
    scene.write_text(
        json.dumps(
            {
                "boxes": [
                    {"centre": [0, 0, 0.5], "size": [1, 1, 1], "yaw": 30, "prompt": "a table"},
                    {"centre": [2, 0, 0.4], "size": [0.5, 0.5, 0.8], "prompt": "a chair"},
                ],
                "scene_prompt": "a kitchen steps=1",
            }
        )
    )
    out_dir = tmp_path / "out"
    code, _, err = run(
        capsys, "compose", str(scene), "-o", str(out_dir), "--server", server.address
    )
    assert code == 0, err
    written = json.loads((out_dir / "scene.json").read_text())
    assert [mesh["file"] for mesh in written["meshes"]] == ["box0.glb", "box1.glb"]
    assert len(written["meshes"][0]["transform"]) == 16
    assert (out_dir / "box1.glb").read_bytes() == make_glb(2)


def test_edit_remote(capsys: pytest.CaptureFixture[str], tmp_path: Path, server: Server) -> None:
    source = tmp_path / "Suzanne.glb"
    source.write_bytes(make_glb(7))
    target = tmp_path / "edited.glb"
    code, _, err = run(
        capsys,
        "edit", str(source), "gold steps=1", "-o", str(target),
        "--mode", "shape", "--region=-1,-1,-1,1,1,1", "--server", server.address,
    )  # fmt: skip
    assert code == 0, err
    assert target.read_bytes() == make_glb(7)


def test_failed_job_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, server: Server
) -> None:
    code, _, err = run(
        capsys, "generate", "crash", "-o", str(tmp_path / "x.glb"), "--server", server.address
    )
    assert code == 1
    assert "Traceback" not in err
    last = one_error_line(err.strip().splitlines()[-1])
    assert last.startswith("internal error in the pipeline: RuntimeError")


def test_progress_line() -> None:
    line = progress_line(
        Progress(stage="coarse", step=3, total=10, loss=0.1234567, eta_s=75.0), 120
    )
    assert line.startswith("coarse 3/10  [######--------------]  30%")
    assert "loss 0.1235" in line and "ETA 1m15s" in line
    assert len(progress_line(Progress("s", 1, 2, None, None), 30)) <= 29


def test_several_meshes_are_written_beside_the_output(tmp_path: Path) -> None:
    meshes = [
        ResultMesh(name=name, glb=make_glb(i + 1), transform=IDENTITY)
        for i, name in enumerate(["cube_p0", "cube p1"])
    ]
    files = write_meshes(Result(meshes=meshes), tmp_path / "cube.glb")
    assert [path.name for path in files] == ["cube.glb", "cube_cube_p1.glb"]
    assert files[1].read_bytes() == make_glb(2)


def test_invalid_events_from_a_local_pipeline_are_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, stub_runner: types.ModuleType
) -> None:
    code, out, err = run(capsys, "generate", "nan", "-o", str(tmp_path / "x.glb"), "--json")
    assert code == 1 and "NaN" not in out
    message = one_error_line(err)
    assert message.startswith("internal error: the pipeline produced an invalid progress event")
    assert message.endswith("loss: NaN is not a finite number")


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        ("afile/x.glb", "afile is not a folder"),
        ("missing/x.glb", "missing does not exist"),
        ("folder", "folder: is a folder; give a file name"),
    ],
)
def test_the_output_path_is_checked_before_any_work(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    stub_runner: types.ModuleType,
    output: str,
    fragment: str,
) -> None:
    (tmp_path / "afile").write_text("")
    (tmp_path / "folder").mkdir()
    code, _, err = run(capsys, "generate", "a cube steps=1", "-o", str(tmp_path / output))
    assert code == 1 and fragment in one_error_line(err)
    assert "accepted" not in err, "the job must not start"


def test_a_huge_seed_names_the_option_and_its_range(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "generate", "a cube", "-o", "x.glb", "--seed", "7" * 5000)
    assert code == 2
    assert "argument --seed: a 5000-digit number is outside 0..4294967295" in one_error_line(err)


def test_jobs_and_fetch_collect_a_result_after_a_disconnect(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, server: Server
) -> None:
    with Client(server.address) as client:
        done = client.submit(GenerateRequest(prompt="done steps=1"))
        client.wait(done, timeout_s=10)
        running = client.submit(GenerateRequest(prompt="running steps=20 step_ms=50"))
        wait_for_step(client, running, 1)
    code, out, err = run(capsys, "jobs", "--server", server.address)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"{running}  generate  running      optimise ")
    assert lines[0].endswith("s  running steps=20 step_ms=50")
    assert lines[1].startswith(f"{done}  generate  done")
    code, out, _ = run(capsys, "jobs", "--server", server.address, "--json", "--limit", "1")
    assert [json.loads(line)["job"] for line in out.splitlines()] == [running]
    target = tmp_path / "late.glb"
    code, _, err = run(capsys, "fetch", running, "-o", str(target), "--server", server.address)
    assert code == 0, err
    assert target.read_bytes() == make_glb() and "wrote" in err
    code, _, err = run(capsys, "fetch", "nope", "-o", str(target), "--server", server.address)
    assert code == 1 and "JOB_ID: 'nope' is not a job id" in one_error_line(err)


def test_an_unknown_jobs_group_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "serve", "--jobs-group", "no-such-group-29")
    assert code == 2
    assert one_error_line(err).startswith("--jobs-group: no group 'no-such-group-29' on this")
