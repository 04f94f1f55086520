"""VSD and SJC through the whole generate pipeline: textured GLBs, particles, a clean shared
prior after VSD jobs, and (slow) the right colour, shape and size with the built-in model."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.export.glb import read_glb
from backend.guidance.prior import ModelFamily
from backend.pipelines.cancel import JobCancelled
from backend.pipelines.generate import generate, optimise_prompt_particles
from backend.pipelines.presets import preset_config
from backend.render.renderer import RenderConfig
from protocol.messages import GenerateRequest, Progress, Result
from tests.judging import nearest_colour, nearest_shape, surface_colour


def _fast_config(method: str, steps: int = 3, particles: int = 1):
    config = preset_config("preview", method, ModelFamily.BUILTIN)
    return replace(
        config,
        steps=steps,
        preview_every=0,
        resolution=16,
        views=2,
        grid=replace(config.grid, resolution=24),
        render=RenderConfig(12, 12),
        face_budget=2000,
        texture_size=128,
        particles=particles,
    )


def _prior_fingerprint(prior) -> tuple[list[str], torch.Tensor]:
    """The U-Net's parameter names and one fixed guided prediction."""
    g = torch.Generator().manual_seed(11)
    x_t = torch.randn(2, 3, 16, 16, generator=g)
    cond = prior.encode_text(["a red cube"] * 2)
    uncond = prior.encode_text([""] * 2)
    with torch.no_grad():
        eps = prior.guided_noise(x_t, torch.tensor([25, 750]), cond, uncond, 7.5)
    return [name for name, _ in prior.unet.named_parameters()], eps


@pytest.mark.parametrize("method", ["vsd", "sjc"])
def test_generate_writes_a_textured_glb(pixel_prior, method):
    names, eps = _prior_fingerprint(pixel_prior)
    request = GenerateRequest(prompt="a red cube", method=method)
    events = list(generate(request, pixel_prior, _fast_config(method), lambda: False))
    assert isinstance(events[-1], Result)
    (mesh_out,) = events[-1].meshes
    assert mesh_out.name == "red_cube"
    (mesh,) = read_glb(mesh_out.glb)
    assert mesh.texture is not None and mesh.texture.shape[2] == 3
    assert mesh.uvs is not None and mesh.uvs.shape == (len(mesh.vertices), 2)
    assert len(mesh.faces) > 100
    # the shared prior predicts exactly as before the job (VSD's LoRA is gone)
    names_after, eps_after = _prior_fingerprint(pixel_prior)
    assert names_after == names and torch.equal(eps_after, eps)


def test_cancelled_vsd_job_leaves_the_prior_unchanged(pixel_prior):
    names, eps = _prior_fingerprint(pixel_prior)
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    request = GenerateRequest(prompt="a blue cone", method="vsd")
    with pytest.raises(JobCancelled):
        list(generate(request, pixel_prior, _fast_config("vsd", steps=10), should_cancel))
    names_after, eps_after = _prior_fingerprint(pixel_prior)
    assert names_after == names and torch.equal(eps_after, eps)


def test_abandoned_vsd_job_leaves_the_prior_unchanged(pixel_prior):
    """A consumer that stops iterating (a dropped client) closes the generator."""
    names, eps = _prior_fingerprint(pixel_prior)
    request = GenerateRequest(prompt="a blue cone", method="vsd")
    events = generate(request, pixel_prior, _fast_config("vsd", steps=10), lambda: False)
    next(events)
    assert _prior_fingerprint(pixel_prior)[0] != names  # the LoRA is attached while it runs
    events.close()
    names_after, eps_after = _prior_fingerprint(pixel_prior)
    assert names_after == names and torch.equal(eps_after, eps)


def test_vsd_particles_differ_and_each_gets_its_own_mesh(pixel_prior):
    config = _fast_config("vsd", steps=3, particles=2)
    request = GenerateRequest(prompt="a green torus", method="vsd", seed=3)
    loop = optimise_prompt_particles(request, pixel_prior, config, lambda: False)
    progress = []
    while True:
        try:
            progress.append(next(loop))
        except StopIteration as done:
            fields = done.value
            break
    assert [(p.step, p.total) for p in progress] == [(s, 6) for s in range(1, 7)]
    a, b = fields
    assert not torch.allclose(a.density_grid, b.density_grid, atol=1e-4)
    assert not torch.allclose(a.albedo_grid, b.albedo_grid, atol=1e-4)

    events = list(generate(request, pixel_prior, config, lambda: False))
    result = events[-1]
    assert isinstance(result, Result)
    assert [m.name for m in result.meshes] == ["green_torus_p1", "green_torus_p2"]
    for mesh_out in result.meshes:
        (mesh,) = read_glb(mesh_out.glb)
        assert mesh.texture is not None and mesh.uvs is not None
    exports = [e for e in events if isinstance(e, Progress) and e.stage == "export"]
    assert [(e.step, e.total) for e in exports] == [(0, 2), (1, 2), (2, 2)]


# ---- with the built-in model ------------------------------------------------------------------

SDS_EXTENT = {
    ("a red cube", 4): 0.792,
    ("a red cube", 0): 0.788,
}
"""Largest extent of CPU SDS's mesh for each (prompt, seed) of the matrix (preview, measured
2026-12-06; docs/research/vsd-on-the-built-in-model.md)."""

BUILTIN_MATRIX = [
    ("vsd", "a red cube", 4),
    ("sjc", "a red cube", 0),
]
"""(method, prompt, seed): the runs the issue saw fail (VSD's grey blob at seed 4, SJC's white
cube at seed 0), about 4 minutes of two test workers (VSD and SJC render 8 views, SJC with 4
noise draws each), which keeps the whole suite under 20 minutes on 2 cores. The cone, cylinder
and torus cells (each passed on 2026-12-06, 199-252 s) and the other runs are in
docs/research/vsd-on-the-built-in-model.md."""


@pytest.mark.slow
@pytest.mark.parametrize(("method", "prompt", "seed"), BUILTIN_MATRIX)
def test_builtin_model_gives_the_asked_colour_shape_and_size(method, prompt, seed):
    from backend.pipelines.runner import run_job

    request = GenerateRequest(prompt=prompt, method=method, seed=seed)
    events = list(run_job(request, device="cpu", model=None, should_cancel=lambda: False))
    result = events[-1]
    assert isinstance(result, Result)
    (mesh,) = read_glb(result.meshes[0].glb)
    colour, shape = prompt.split()[1:]
    rgb = surface_colour(mesh)  # texels weighted by the surface they cover
    got_shape, features = nearest_shape(mesh.vertices, mesh.faces)
    extent = float((mesh.vertices.max(0) - mesh.vertices.min(0)).max())
    what = f"{method} {prompt!r} seed {seed}: rgb {rgb}, features {features}, extent {extent:.3f}"
    assert nearest_colour(rgb) == colour, what
    assert got_shape == shape, what
    # full size: not a speck, not a blob filling the volume (the runs: 0.09-0.31 and
    # 1.63-1.65). The matrix of 2026-12-07 (commit b536ca1, 5 shapes x 3 seeds): VSD
    # 0.98-1.02 of SDS's extent, SJC 0.89-1.02; these two cells: VSD 0.99, SJC 1.02
    # (docs/research/vsd-on-the-built-in-model.md)
    assert 0.6 * SDS_EXTENT[prompt, seed] <= extent <= 1.1 * SDS_EXTENT[prompt, seed], what
