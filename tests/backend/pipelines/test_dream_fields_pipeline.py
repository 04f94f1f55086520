"""Generate under CLIP guidance (Dream Fields): tiny CLIPs from config for the plumbing, and
(slow) the built-in tiny-clip for the colour of the result."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.export.glb import read_glb
from backend.guidance.prior import ModelFamily
from backend.pipelines.cancel import JobCancelled
from backend.pipelines.generate import generate
from backend.pipelines.runner import run_config, run_job
from backend.render.renderer import RenderConfig
from protocol.errors import ProtocolError
from protocol.messages import ComposeRequest, GenerateRequest, Preview, Progress, PromptBox, Result
from tests.judging import nearest_colour, surface_colour
from tests.tiny_clips import save_tiny_clip, tiny_clip


def _fast_config(clip, steps: int = 3):
    config = run_config("preview", "clip", clip)
    return replace(
        config,
        steps=steps,
        preview_every=steps,
        grid=replace(config.grid, resolution=24),
        render=RenderConfig(12, 12),
        face_budget=2000,
        texture_size=128,
    )


def test_clip_preset_renders_at_the_clip_input_size_over_patterns_with_transmittance():
    clip = tiny_clip()
    config = run_config("preview", "clip", clip)
    assert config.resolution == clip.image_size
    assert config.pattern_backgrounds
    assert config.regularisers.transmittance > 0
    assert config.regularisers.transmittance_target.end == pytest.approx(0.88)
    assert clip.family is ModelFamily.LATENT  # a CLIP from elsewhere gets the GPU-sized table


def test_clip_guidance_streams_progress_previews_and_a_textured_glb():
    clip = tiny_clip()
    request = GenerateRequest(prompt="a red cube", method="clip")
    events = list(generate(request, clip, _fast_config(clip), lambda: False))
    progress = [e for e in events if isinstance(e, Progress) and e.stage == "optimise"]
    assert [p.step for p in progress] == [1, 2, 3]
    assert all(p.loss is not None for p in progress)
    assert any(isinstance(e, Preview) for e in events)
    result = events[-1]
    assert isinstance(result, Result)
    (mesh,) = read_glb(result.meshes[0].glb)
    assert mesh.texture is not None and mesh.uvs is not None


def test_clip_guidance_is_cancelled_between_steps():
    clip = tiny_clip()
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    request = GenerateRequest(prompt="a red cube", method="clip")
    with pytest.raises(JobCancelled):
        list(generate(request, clip, _fast_config(clip, steps=10), should_cancel))
    assert len(calls) == 3


def test_run_job_takes_the_clip_the_request_names(tmp_path):
    folder = save_tiny_clip(tmp_path / "clip")
    request = GenerateRequest(prompt="a blue sphere", method="clip", model=str(folder))
    events = list(
        run_job(request, device="cpu", model=None, should_cancel=lambda: False, max_steps=2)
    )
    assert isinstance(events[-1], Result)


def test_clip_guidance_is_refused_for_scenes_naming_the_field():
    box = PromptBox(prompt="a red cube", centre=(0.0, 0.0, 0.5), size=(1.0, 1.0, 1.0))
    request = ComposeRequest(boxes=[box], method="clip")
    with pytest.raises(ProtocolError) as caught:
        list(run_job(request, device="cpu", model=None, should_cancel=lambda: False))
    assert caught.value.field == "method"


def test_a_bad_clip_folder_fails_the_job_naming_the_field(tmp_path):
    (tmp_path / "nothing").mkdir()
    request = GenerateRequest(prompt="a red cube", method="clip", model=str(tmp_path / "nothing"))
    with pytest.raises(ProtocolError) as caught:
        list(run_job(request, device="cpu", model=None, should_cancel=lambda: False))
    assert caught.value.field == "clip"


@pytest.mark.slow
@pytest.mark.parametrize(("prompt", "seed"), [("a yellow cone", 0)])
def test_tiny_clip_gives_the_asked_colour(prompt, seed):
    """177 s on a busy 2-core machine (load about 4, 2026-12-07), about 1.5 min idle: the
    preview preset and the export."""
    request = GenerateRequest(prompt=prompt, method="clip", seed=seed)
    torch.manual_seed(seed)
    events = list(run_job(request, device="cpu", model=None, should_cancel=lambda: False))
    result = events[-1]
    assert isinstance(result, Result)
    (mesh,) = read_glb(result.meshes[0].glb)
    rgb = surface_colour(mesh)
    assert nearest_colour(rgb) == prompt.split()[1], f"{prompt!r} seed {seed}: rgb {rgb}"
