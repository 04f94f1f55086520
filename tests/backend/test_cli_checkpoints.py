"""The CLI with real checkpoint layouts written at test time: `generate --model FOLDER
--precision ...` in-process and through `boxdream serve --model FOLDER`, `info --model`, and one
clear line for a folder that is not a diffusers model or lacks a component."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.cli import main
from backend.export.glb import read_glb
from backend.guidance.precision import cpu_has_bf16
from protocol.client import Client
from protocol.errors import ServerUnreachable


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_glb(path: Path) -> None:
    (mesh,) = read_glb(path.read_bytes())
    assert len(mesh.faces) > 0 and mesh.texture is not None


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("method", ["sds", "vsd", "sjc"])
def test_generate_with_a_stable_diffusion_folder(capsys, tmp_path, checkpoints, method, precision):
    out = tmp_path / "x.glb"
    code, _, err = _run(
        capsys,
        "generate",
        "a red cube",
        "--model",
        str(checkpoints["sd"]),
        "--precision",
        precision,
        "--method",
        method,
        "--max-steps",
        "2",
        "--device",
        "cpu",
        "-o",
        str(out),
    )
    assert code == 0, err
    assert "loss nan" not in err and "loss inf" not in err
    _assert_glb(out)


def test_generate_with_an_if_style_folder(capsys, tmp_path, checkpoints):
    out = tmp_path / "x.glb"
    argv = ["generate", "a blue sphere", "--model", str(checkpoints["if"]), "-o", str(out)]
    code, _, err = _run(capsys, *argv, "--precision", "bf16", "--max-steps", "2")
    assert code == 0, err
    _assert_glb(out)


def test_info_shows_family_precision_and_preset_values(capsys, checkpoints):
    code, out, err = _run(capsys, "info", "--model", str(checkpoints["sd"]), "--precision", "fp16")
    assert code == 0, err
    assert "family latent, precision fp16" in out
    assert "sds: preview 1500 steps x 1 views at 64 px, guidance 100" in out
    assert "shapes:" not in out  # no small vocabulary: any prompt goes
    code, out, _ = _run(capsys, "info")
    auto = "bf16" if cpu_has_bf16() else "fp32"  # what "auto" means on this CPU
    assert f"family built-in, precision {auto}" in out and "shapes: cube" in out


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("empty", "is not a diffusers model folder (it has no model_index.json)"),
        ("no-vae", "lacks the folder(s) vae/ that its model_index.json lists"),
        ("no-unet-entry", "lacks the component(s) unet in its model_index.json"),
        ("bad-weights", "cannot load unet (UNet2DConditionModel)"),
    ],
)
def test_a_broken_folder_is_one_clear_line(capsys, tmp_path, checkpoints, damage, fragment):
    folder = tmp_path / "model"
    if damage == "empty":
        folder.mkdir()
    else:
        shutil.copytree(checkpoints["sd"], folder)
    if damage == "no-vae":
        shutil.rmtree(folder / "vae")
    elif damage == "no-unet-entry":
        index = (folder / "model_index.json").read_text()
        (folder / "model_index.json").write_text(index.replace('"unet"', '"unet_gone"'))
    elif damage == "bad-weights":
        (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    code, _, err = _run(capsys, "generate", "a red cube", "--model", str(folder), "-o", "x.glb")
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("boxdream: error:")]
    assert errors == err.strip().splitlines()[-1:], err  # one error line, the last
    assert errors[0].startswith("boxdream: error: model: ") and fragment in errors[0]
    assert "Traceback" not in err


def test_a_prompt_outside_the_builtin_world_is_refused_before_any_work(capsys, tmp_path):
    code, _, err = _run(capsys, "generate", "a bronze statue of a fox", "-o", str(tmp_path / "x"))
    assert code == 1
    assert "prompt: 'a bronze statue of a fox' names no shape and no colour" in err
    assert "--model with a Stable Diffusion checkpoint" in err
    assert not (tmp_path / "x").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _serve(folder: Path, jobs: Path) -> Iterator[str]:
    address = f"tcp://127.0.0.1:{_free_port()}"
    argv = [sys.executable, "-m", "backend.cli", "serve", "--model", str(folder)]
    argv += ["--bind", address, "--jobs-dir", str(jobs), "--device", "cpu", "--max-steps", "2"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    server = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(address, timeout_s=2.0, retries=0) as client:
                    client.hello()
                break
            except ServerUnreachable:
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, "the server did not answer in 120 s"
        yield address
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.slow
@pytest.mark.parametrize(("layout", "precision"), [("sd", "fp16"), ("if", "bf16")])
def test_generate_through_serve_with_a_model_folder(
    capsys, tmp_path, checkpoints, layout, precision
):
    with _serve(checkpoints[layout], tmp_path / "jobs") as address:
        code, out, err = _run(capsys, "info", "--server", address)
        assert code == 0 and f"{checkpoints[layout]} (default)" in out, err
        out_file = tmp_path / "x.glb"
        argv = ["generate", "a red cube", "--server", address, "-o", str(out_file)]
        code, _, err = _run(capsys, *argv, "--method", "vsd", "--precision", precision)
        assert code == 0, err
        _assert_glb(out_file)
