"""Every method and pipeline in every precision, on tiny Stable-Diffusion- and IF-layout folders
written at test time, through the runner (as a worker or the CLI runs a job): losses finite,
the field and VSD's LoRA change and stay finite, a result GLB arrives."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.export.export_field import ExportConfig
from backend.export.glb import read_glb
from backend.export.marching import MarchingConfig
from backend.field.grid_field import DenseGridField, GridFieldConfig
from backend.pipelines import generate as generate_module
from backend.pipelines import methods as methods_module
from backend.pipelines import runner
from backend.render.renderer import RenderConfig
from protocol.errors import ProtocolError
from protocol.messages import (
    ComposeRequest,
    GenerateRequest,
    Progress,
    PromptBox,
    Result,
)
from tests.backend.pipelines.edit_meshes import cube_glb, edit_request

PRECISIONS = ["fp32", "fp16", "bf16"]
STEPS = 3


@pytest.fixture
def small_presets(monkeypatch):
    """The model family's real preset, at test sizes (a few steps, small grid and texture)."""
    real = runner.preset_config

    def small(preset, method, family):
        return replace(
            real(preset, method, family),
            steps=STEPS,
            views=2,
            resolution=16,
            preview_every=STEPS,
            grid=GridFieldConfig(resolution=24),
            render=RenderConfig(12, 12),
            export=ExportConfig(marching=MarchingConfig(coarse_resolution=24, fine_resolution=32)),
            face_budget=1500,
            texture_size=64,
        )

    monkeypatch.setattr(runner, "preset_config", small)


@pytest.fixture
def trained(monkeypatch):
    """Records each job's fields (start and end) and VSD's LoRA tensors (start and end)."""
    seen: dict[str, list] = {"fields": [], "lora": []}
    real_method, real_field = methods_module.make_method, generate_module.DenseGridField

    def make_method(name, prior, config, prompt=""):
        method = real_method(name, prior, config, prompt)
        lora = getattr(method, "lora", None)
        if lora is not None:
            params = lora.trainable_parameters
            seen["lora"].append((params, [p.detach().clone() for p in params]))
        return method

    def field(config):
        made = real_field(config)
        seen["fields"].append((made, [p.detach().clone() for p in made.parameters()]))
        return made

    monkeypatch.setattr(methods_module, "make_method", make_method)
    monkeypatch.setattr(generate_module, "DenseGridField", field)
    return seen


def _run(request, folder: str) -> list:
    return list(runner.run_job(request, device="cpu", model=folder, should_cancel=lambda: False))


def _assert_finished(events: list, meshes: int = 1) -> None:
    losses = [e.loss for e in events if isinstance(e, Progress) and e.loss is not None]
    optimise = [e for e in events if isinstance(e, Progress) and not e.stage.startswith("export")]
    assert optimise and len(losses) == len(optimise)  # every step reported a finite loss
    assert all(torch.isfinite(torch.tensor(losses)))
    result = events[-1]
    assert isinstance(result, Result) and len(result.meshes) == meshes
    for mesh in result.meshes:
        (read,) = read_glb(mesh.glb)
        assert len(read.faces) > 0 and read.texture is not None


def _assert_moved(pairs) -> None:
    assert pairs
    for params, before in pairs:
        assert all(torch.isfinite(p).all() for p in params)
        assert any(not torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True))


@pytest.mark.parametrize("layout", ["sd", "if"])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(("method", "particles"), [("sds", 1), ("vsd", 1), ("vsd", 2), ("sjc", 1)])
def test_generate(checkpoints, small_presets, trained, layout, precision, method, particles):
    request = GenerateRequest(
        prompt="a red cube", method=method, precision=precision, particles=particles
    )
    events = _run(request, checkpoints[layout])
    _assert_finished(events, meshes=particles)
    fields = trained["fields"]
    assert len(fields) == particles
    _assert_moved([(list(f.parameters()), before) for f, before in fields])
    if method == "vsd":
        _assert_moved(trained["lora"])


@pytest.mark.parametrize("layout", ["sd", "if"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_compose_and_edits(checkpoints, small_presets, layout, precision):
    box = PromptBox(centre=(0.0, 0.0, 0.5), size=(1.0, 1.0, 1.0), yaw_deg=0.0, prompt="a cube")
    scene = ComposeRequest(boxes=[box], precision=precision)
    _assert_finished(_run(scene, checkpoints[layout]))
    for mode in ("texture", "shape"):
        edit = edit_request([cube_glb()], "a blue cube", mode=mode, precision=precision)
        _assert_finished(_run(edit, checkpoints[layout]))


def test_a_run_whose_gradient_stays_nan_fails_naming_method_step_and_precision(
    checkpoints, small_presets, monkeypatch
):
    real = methods_module.make_method

    def broken(name, prior, config, prompt=""):
        method = real(name, prior, config, prompt)
        step = method.step

        def nan_step(x0, *args):
            out = step(x0, *args)
            return replace(out, loss=out.loss * float("nan"))

        method.step = nan_step
        return method

    monkeypatch.setattr(methods_module, "make_method", broken)
    monkeypatch.setattr(
        runner, "preset_config", lambda *a: replace(_small(*a), steps=10, max_non_finite_steps=2)
    )
    events = []
    with pytest.raises(ProtocolError) as caught:
        for event in runner.run_job(
            GenerateRequest(prompt="a cube", precision="fp16"),
            device="cpu",
            model=checkpoints["sd"],
            should_cancel=lambda: False,
        ):
            events.append(event)
    error = caught.value
    assert (error.code, error.field) == ("not_finite", "precision")
    assert "method sds" in error.message and "step 3" in error.message
    assert "fp16" in error.message
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.loss for p in progress] == [None, None]  # skipped steps report no loss


def _small(preset, method, family):
    """A tiny run of the family's preset, for the failure test (no export is reached)."""
    from backend.pipelines.presets import preset_config

    return replace(
        preset_config(preset, method, family),
        resolution=16,
        views=1,
        grid=GridFieldConfig(resolution=16),
        render=RenderConfig(8, 8),
        preview_every=0,
    )


def test_field_parameters_are_fp32_whatever_the_prior(checkpoints):
    prior = runner.load_prior(checkpoints["sd"], torch.device("cpu"), "bf16")
    assert prior.dtype == torch.bfloat16 and prior.precision == "bf16"
    field = DenseGridField(GridFieldConfig(resolution=8)).to(prior.device)
    assert all(p.dtype == torch.float32 for p in field.parameters())
