"""The generate pipeline with a tiny random prior: event order, cancel, determinism, GLB."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.export.glb import read_glb
from backend.guidance.prior import ModelFamily
from backend.pipelines.cancel import JobCancelled
from backend.pipelines.generate import generate, optimise_prompt_field
from backend.pipelines.presets import preset_config
from backend.render.renderer import RenderConfig
from protocol.messages import IDENTITY, GenerateRequest, Preview, Progress, Result


def _fast_config(steps: int = 3):
    config = preset_config("preview", "sds", ModelFamily.BUILTIN)
    grid = replace(config.grid, resolution=24)
    return replace(
        config,
        steps=steps,
        preview_every=steps,
        resolution=16,
        grid=grid,
        render=RenderConfig(12, 12),
        face_budget=2000,
        texture_size=128,
    )


def test_events_arrive_in_order_and_end_with_a_textured_glb(pixel_prior):
    events = list(
        generate(GenerateRequest(prompt="a red cube"), pixel_prior, _fast_config(), lambda: False)
    )
    progress = [e for e in events if isinstance(e, Progress) and e.stage == "optimise"]
    assert [p.step for p in progress] == [1, 2, 3]
    assert all(p.total == 3 and p.loss is not None and p.eta_s >= 0 for p in progress)
    assert any(isinstance(e, Preview) and e.png.startswith(b"\x89PNG") for e in events)
    assert isinstance(events[-1], Result)
    (mesh_out,) = events[-1].meshes
    assert mesh_out.name == "red_cube" and mesh_out.transform == IDENTITY
    (mesh,) = read_glb(mesh_out.glb)
    assert mesh.uvs is not None and mesh.texture is not None and len(mesh.faces) > 100


def test_cancel_takes_effect_within_one_step(pixel_prior):
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    seen = []
    with pytest.raises(JobCancelled):
        for event in generate(
            GenerateRequest(prompt="a cube"), pixel_prior, _fast_config(10), should_cancel
        ):
            seen.append(event)
    assert max(e.step for e in seen if isinstance(e, Progress)) == 2


def _final_field(prior, seed: int):
    request = GenerateRequest(prompt="a blue sphere", seed=seed)
    loop = optimise_prompt_field(
        request, prior, replace(_fast_config(), preview_every=0), lambda: False
    )
    while True:
        try:
            next(loop)
        except StopIteration as done:
            return done.value


def test_same_seed_same_result_other_seed_other_result(pixel_prior):
    a = _final_field(pixel_prior, seed=7)
    b = _final_field(pixel_prior, seed=7)
    c = _final_field(pixel_prior, seed=8)
    assert torch.equal(a.density_grid, b.density_grid) and torch.equal(a.albedo_grid, b.albedo_grid)
    assert not torch.equal(a.density_grid, c.density_grid)


def test_latent_prior_runs_the_whole_pipeline(latent_prior):
    events = list(
        generate(GenerateRequest(prompt="a cube"), latent_prior, _fast_config(2), lambda: False)
    )
    assert isinstance(events[-1], Result)
