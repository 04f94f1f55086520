"""`boxdream score RESULT.glb PROMPT`: the line, --json, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from backend.cli import main
from tests.tiny_clips import save_tiny_clip

RED_CUBE = Path(__file__).resolve().parents[2] / "docs" / "images" / "a_red_cube.glb"


def test_score_prints_the_clip_score_and_r_precision_as_json(tmp_path, capsys):
    folder = save_tiny_clip(tmp_path / "clip")
    code = main(
        ["score", str(RED_CUBE), "a red cube", "--clip", str(folder), "--views", "4", "--json"]
    )
    assert code == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["prompt"] == "a red cube"
    assert line["views"] == 4 and len(line["best_captions"]) == 4
    assert line["distractors"] == 71
    assert -1.0 <= line["clip_score"] <= 1.0 and 0.0 <= line["r_precision"] <= 1.0


def test_score_prints_one_line_without_json(tmp_path, capsys):
    folder = save_tiny_clip(tmp_path / "clip")
    assert main(["score", str(RED_CUBE), "a red cube", "--clip", str(folder)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "CLIP score" in out[0] and "R-precision" in out[0]


def test_a_bad_clip_folder_is_one_error_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["score", str(RED_CUBE), "a red cube", "--clip", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--clip" in err[0] and "not a CLIP checkpoint folder" in err[0]


def test_a_file_that_is_not_a_glb_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"not a glb")
    assert main(["score", str(bad), "a red cube"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.glb" in err[0]
