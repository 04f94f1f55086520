"""The compose pipeline with tiny random priors: schedule, placement of every mesh in its box,
late errors; and, with the built-in model, the colour and shape of two objects side by side."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.export.errors import MeshError
from backend.export.glb import read_glb
from backend.export.marching import MarchingConfig
from backend.guidance.prior import ModelFamily
from backend.pipelines import compose as compose_module
from backend.pipelines.compose import ComposeConfig, compose, step_schedule
from backend.pipelines.presets import preset_config
from backend.pipelines.refine import export_optimised
from backend.pipelines.runner import load_prior
from backend.render.renderer import RenderConfig
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import ComposeRequest, JobWarning, Progress, PromptBox, Result
from tests.judging import nearest_colour, nearest_shape, surface_colour

BOXES = [
    PromptBox(centre=(-0.7, 0.4, 0.3), size=(0.9, 0.5, 0.6), yaw_deg=30.0, prompt="a red cube"),
    PromptBox(centre=(0.8, -0.2, 0.5), size=(0.5, 0.5, 1.0), yaw_deg=-100.0, prompt="a cube"),
]


def fast_config(steps: int = 2):
    config = preset_config("preview", "sds", ModelFamily.BUILTIN)
    return replace(
        config,
        steps=steps,
        preview_every=0,
        resolution=16,
        grid=replace(config.grid, resolution=16),
        render=RenderConfig(8, 8),
        export=replace(config.export, marching=MarchingConfig(32, 48)),
        face_budget=1000,
        texture_size=64,
    )


def world_vertices(mesh_out) -> np.ndarray:
    """[V, 3] vertices of a result mesh in world space (its GLB through its transform)."""
    (mesh,) = read_glb(mesh_out.glb)
    transform = np.asarray(mesh_out.transform).reshape(4, 4)
    return mesh.vertices @ transform[:3, :3].T + transform[:3, 3]


def in_box_frame(points: np.ndarray, box: PromptBox) -> np.ndarray:
    """World points -> the box's own axes around its centre (metres)."""
    c, s = math.cos(math.radians(box.yaw_deg)), math.sin(math.radians(box.yaw_deg))
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return (points - np.asarray(box.centre)) @ rotation


def test_schedule_visits_every_box_and_spreads_scene_steps():
    schedule = step_schedule(3, 10, ComposeConfig(object_steps=1.0, scene_steps=0.5, scene_until=1))
    assert len(schedule) == 10 * 3 + 5
    assert [schedule.count(i) for i in range(3)] == [10, 10, 10]
    scene_steps = [i for i, s in enumerate(schedule) if s is None]
    assert len(scene_steps) == 5
    gaps = np.diff(scene_steps)
    assert gaps.min() >= 4 and gaps.max() <= 8  # one scene step every two rounds of 3 boxes
    assert step_schedule(2, 4, ComposeConfig(object_steps=1.0, scene_steps=0.0)) == [0, 1] * 4


def test_scene_steps_can_be_kept_to_the_start_of_the_run():
    settings = ComposeConfig(object_steps=1.0, scene_steps=0.5, scene_until=0.5)
    schedule = step_schedule(2, 8, settings)  # 8 rounds of 2 boxes, 4 scene steps
    assert schedule == [None, 0, 1] * 4 + [0, 1] * 4


@pytest.mark.parametrize(
    ("field", "value"), [("object_steps", -1.0), ("scene_steps", math.nan), ("scene_until", 0.0)]
)
def test_a_bad_compose_setting_names_its_field(field, value):
    with pytest.raises(ValueError, match=field):
        ComposeConfig(**{field: value})


def test_every_mesh_lies_inside_its_box(pixel_prior):
    request = ComposeRequest(boxes=BOXES, scene_prompt="a table", include_background=True)
    events = list(compose(request, pixel_prior, fast_config(), lambda: False))
    optimise = [e for e in events if isinstance(e, Progress) and e.stage == "optimise"]
    assert len(optimise) == len(step_schedule(2, 2))
    assert isinstance(events[-1], Result)
    meshes = events[-1].meshes
    assert [m.name for m in meshes] == ["red_cube", "cube"]
    # The untouched background stays below its iso-level: reported, not meshed.
    assert any(isinstance(e, JobWarning) and "background" in e.message for e in events)
    for mesh_out, box in zip(meshes, BOXES, strict=True):
        local = in_box_frame(world_vertices(mesh_out), box)
        half = np.asarray(box.size) / 2
        assert (np.abs(local) <= half * 1.02).all(), (mesh_out.name, np.abs(local).max(0), half)
        # The start blob fills the same share of every edge: the box's proportions carried over.
        reach = np.abs(local).max(axis=0) / half
        assert reach.min() > 0.6 and reach.max() - reach.min() < 0.15, reach


def test_background_needs_a_scene_prompt(pixel_prior):
    request = ComposeRequest(boxes=BOXES, include_background=True)
    with pytest.raises(ProtocolError) as caught:
        next(compose(request, pixel_prior, fast_config(), lambda: False))
    assert caught.value.field == "include_background"


def test_an_empty_object_is_an_error_on_its_box(pixel_prior, monkeypatch):
    exported = []

    def export_or_fail(result, *args, **kwargs):
        exported.append(kwargs["name"])
        if len(exported) == 2:
            raise MeshError("the field is empty: its largest density is 0", "density")
        return export_optimised(result, *args, **kwargs)

    monkeypatch.setattr(compose_module, "export_optimised", export_or_fail)
    settings = ComposeConfig(object_steps=1.0, scene_steps=0.0)
    with pytest.raises(ProtocolError) as caught:
        list(
            compose(
                ComposeRequest(boxes=BOXES), pixel_prior, fast_config(1), lambda: False, settings
            )
        )
    assert exported == ["red_cube", "cube"]
    assert caught.value.field == "boxes[1]" and caught.value.code == ErrorCode.BAD_VALUE
    assert caught.value.message.startswith("boxes[1]: the object for 'a cube' came out empty")


def test_scene_steps_run_with_a_latent_prior(latent_prior):
    settings = ComposeConfig(object_steps=1.0, scene_steps=1.0)
    run = compose(
        ComposeRequest(boxes=BOXES), latent_prior, fast_config(1), lambda: False, settings
    )
    first = next(run)  # the schedule starts with a scene step
    run.close()
    assert isinstance(first, Progress) and first.step == 1 and math.isfinite(first.loss)


# ---- with the built-in model -----------------------------------------------------------------


@pytest.mark.slow
def test_red_cube_and_blue_sphere_side_by_side():
    request = ComposeRequest(
        boxes=[
            PromptBox(
                centre=(-0.6, 0.0, 0.5), size=(1.0, 1.0, 1.0), yaw_deg=0.0, prompt="a red cube"
            ),
            PromptBox(
                centre=(0.6, 0.0, 0.5), size=(1.0, 1.0, 1.0), yaw_deg=0.0, prompt="a blue sphere"
            ),
        ]
    )
    prior = load_prior(None, torch.device("cpu"))
    config = preset_config("preview", "sds", ModelFamily.BUILTIN)
    events = list(compose(request, prior, config, lambda: False))
    assert isinstance(events[-1], Result)
    outputs = events[-1].meshes
    assert [m.name for m in outputs] == ["red_cube", "blue_sphere"]
    judged = []
    for mesh_out, box in zip(outputs, request.boxes, strict=True):
        (mesh,) = read_glb(mesh_out.glb)
        local = in_box_frame(world_vertices(mesh_out), box)
        assert (np.abs(local) <= np.asarray(box.size) / 2 * 1.02).all(), mesh_out.name
        rgb = surface_colour(mesh)
        shape, features = nearest_shape(mesh.vertices, mesh.faces)
        judged.append((nearest_colour(rgb), shape, f"{rgb.round(2)}, {features.round(2)}"))
    (cube_colour, cube_shape, cube_detail), (sphere_colour, sphere_shape, sphere_detail) = judged
    assert (cube_colour, cube_shape) == ("red", "cube"), cube_detail
    assert (sphere_colour, sphere_shape) == ("blue", "sphere"), sphere_detail
