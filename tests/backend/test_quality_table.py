"""`boxdream bench --quality`: the table of every method's CLIP scores (runs stubbed)."""

from __future__ import annotations

from backend import quality_table
from backend.bench import build_parser


def test_quality_prints_one_row_per_method_with_means(monkeypatch, capsys):
    def fake_run(method, prompt, preset, seed, clip_name, device):
        good = method == "sds"
        return {
            "method": method,
            "prompt": prompt,
            "clip_score": 0.9 if good else 0.8,
            "r_precision": 1.0 if good else 0.5,
            "seconds": 100.0,
        }

    monkeypatch.setattr(quality_table, "score_run", fake_run)
    args = build_parser().parse_args(
        ["--quality", "--methods", "sds,clip", "--prompts", "a red cube;a blue sphere"]
    )
    args.preset = "preview"
    assert quality_table.main(args) == 0
    out = capsys.readouterr().out
    assert "| method | a red cube | a blue sphere | mean R-precision |" in out
    assert "| sds | 1.00 / 0.900 | 1.00 / 0.900 | 1.00 | 0.900 | 100 |" in out
    assert "| clip | 0.50 / 0.800 | 0.50 / 0.800 | 0.50 | 0.800 | 100 |" in out


def test_the_default_prompts_are_the_readme_five():
    assert quality_table.QUALITY_PROMPTS == (
        "a red cube",
        "a blue sphere",
        "a yellow cone",
        "a green torus",
        "a purple cylinder",
    )
