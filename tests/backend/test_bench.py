"""The bench's architecture path with a tiny stand-in builder: a step split into its parts and
the table that reports them (the full-size build is `boxdream bench --architecture sd-2.1`)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backend import bench
from backend.field.grid_field import GridFieldConfig
from backend.guidance import architectures
from backend.pipelines import presets, runner
from tests.tiny_priors import tiny_latent_prior


@pytest.mark.parametrize("method", ["sds", "vsd"])
def test_architecture_bench_splits_the_step(monkeypatch, method):
    monkeypatch.setitem(architectures.BUILDERS, "sd-2.1", lambda device, dtype: tiny_latent_prior())
    real = presets.preset_config
    small = lambda *args: bench_small(real(*args))  # noqa: E731
    monkeypatch.setattr(presets, "preset_config", small)
    monkeypatch.setattr(runner, "preset_config", small)
    row = bench.measure(method, 1, "preview", None, "cpu", "fp32", "sd-2.1")
    parts = row["section_ms"]
    assert set(parts) >= {"render", "encode", "guidance", "backward", "optimiser"}
    assert all(v >= 0.0 for v in parts.values())
    assert ("lora" in parts and parts["lora"] > 0.0) == (method == "vsd")
    assert row["model"] == "sd-2.1" and row["precision"] == "fp32"
    table = bench._sections_table([row])
    assert f"| {method} | fp32 | 1 x 64^2 |" in table and "(RSS)" in table


def bench_small(config):
    """The preset at a test's size (a small grid and texture; the bench sets the steps)."""
    return replace(config, grid=GridFieldConfig(resolution=16), face_budget=500, texture_size=64)


def test_table_puts_the_reference_path_beside_the_fast_one():
    def row(path: str, step_ms: float, render_ms: float) -> dict:
        return {
            "method": "sds",
            "path": path,
            "views x res": "8 x 32^2",
            "step_ms": step_ms,
            "render_fwd_bwd_ms": render_ms,
            "guidance_ms": 100.0,
            "steps_per_s": 1000.0 / step_ms,
            "preset_steps": 300,
            "export_ms": 1000.0,
            "peak_rss_mb": 650.0,
        }

    table = bench._table([row("fast", 200.0, 100.0)], [row("reference", 400.0, 250.0)])
    assert "reference step ms | step ratio" in table and "render ratio" in table
    assert "| sds | 8 x 32^2 | 200 | 400 | 0.50x | 100 | 250 | 0.40x | 100 |" in table


def test_bench_splits_stage_2_when_the_preset_has_it(monkeypatch, pixel_prior):
    real = presets.preset_config

    def with_stage_2(*args):
        config = bench_small(real(*args))
        refine = presets.RefineConfig(steps=1, views=2, resolution=16, faces=200, subdivisions=1)
        return replace(config, refine=refine, resolution=16)

    monkeypatch.setattr(presets, "preset_config", with_stage_2)
    monkeypatch.setattr(runner, "preset_config", with_stage_2)
    monkeypatch.setattr(runner, "load_prior", lambda *args: pixel_prior)
    row = bench.measure("sds", 1, "standard", None, "cpu", "fp32")
    refine = row["refine"]
    assert refine["views x res"] == "2 x 16^2" and refine["step_ms"] > 0
    assert set(refine["section_ms"]) >= {"render", "guidance", "regularisers", "backward"}
    assert refine["regularisers_ms"] > 0 and refine["rasterise_fwd_bwd_ms"] > 0
    assert "| sds | 2 x 16^2 | 800 |" in bench._refine_table([row])  # 200 subdivided once


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "fast"])
def test_reference_path_is_the_step_of_2026_12_06(monkeypatch, reference):
    """The reference path runs the prior in fp32, the fast path in "auto" precision (bf16 where
    the CPU has it)."""
    import torch

    from backend.guidance.precision import resolve_precision

    real = presets.preset_config
    small = lambda *args: bench_small(real(*args))  # noqa: E731
    monkeypatch.setattr(presets, "preset_config", small)
    monkeypatch.setattr(runner, "preset_config", small)
    row = bench.measure("sds", 1, "preview", None, "cpu", "auto", reference=reference)
    auto = "bf16" if resolve_precision("auto", torch.device("cpu")) == torch.bfloat16 else "fp32"
    assert row["precision"] == ("fp32" if reference else auto)
    assert row["path"] == ("reference" if reference else "fast")


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "fast"])
def test_reference_path_updates_with_the_per_parameter_adam(monkeypatch, reference):
    import torch

    fused = []
    real_adam = torch.optim.Adam

    def recording_adam(*args, **kwargs):
        fused.append(kwargs.get("fused"))
        return real_adam(*args, **kwargs)

    real = presets.preset_config
    small = lambda *args: bench_small(real(*args))  # noqa: E731
    monkeypatch.setattr(presets, "preset_config", small)
    monkeypatch.setattr(runner, "preset_config", small)
    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    bench.measure("sds", 1, "preview", None, "cpu", "fp32", reference=reference)
    assert fused[0] is (None if reference else True)


def test_rounds_alternate_the_paths_and_the_fastest_counts(monkeypatch, capsys):
    calls = []
    steps = iter([300.0, 150.0, 280.0, 160.0])  # reference, fast, reference, fast

    def measured(args, method, reference):
        calls.append(reference)
        return {
            "method": method,
            "path": "reference" if reference else "fast",
            "views x res": "8 x 32^2",
            "step_ms": next(steps),
            "render_fwd_bwd_ms": 50.0,
            "guidance_ms": 50.0,
            "steps_per_s": 1.0,
            "preset_steps": 300,
            "export_ms": 1000.0,
            "peak_rss_mb": 600.0 + 10 * len(calls),
        }

    monkeypatch.setattr(bench, "_measure_apart", measured)
    args = bench.build_parser().parse_args(["--methods", "sds", "--rounds", "2"])
    assert bench.main(args) == 0
    assert calls == [True, False, True, False]
    out = capsys.readouterr().out
    # fastest of each path: 280 (peak RSS the higher of its rounds, 630) and 150 (640)
    assert "| sds | 8 x 32^2 | 150 | 280 | 0.54x |" in out and "| 640 |" in out
    assert "fastest of 2 round(s)" in out
    assert bench.main(bench.build_parser().parse_args(["--rounds", "0"])) == 2
