"""Prompt boxes to a scene of textured meshes: Set-the-Scene's per-object fields trained with
locally conditioned diffusion (Po & Wetzstein) and object-centred steps.

The steps of one run interleave two kinds (`step_schedule`):

- scene steps: cameras orbit the whole scene; each pixel is owned by the box its ray enters
  first (`box_masks`), and the noise prediction combines every box's guided prediction by those
  masks (`local_conditioning`), the scene prompt (or the unconditional branch) outside the boxes;
- object-centred steps, round-robin over the boxes: cameras orbit one box and see that object
  alone, guided by its prompt only, so small boxes still get detailed objects.

An object step is a generate step of that object: its grid has a generated field's voxel size
(`object_grid`), it smooths only that object (`distill`'s subject), and both kinds of step
follow the preset's guidance interval and views. The scene steps come in the first half of the
run only (`ComposeConfig`).

All cameras come from `sample_cameras` with its default orbit, in normalised frames: the scene
frame for scene steps (the same as orbiting the world with target = scene centre and scale =
the scene's half-extent / VIEW_HALF_EXTENT) and object units for object steps (target = box
centre, scale = the box's largest half-edge / VIEW_HALF_EXTENT); view prompts ("front view")
are relative to each box's yaw.

Output: one mesh per box, vertices in the box's own frame (metres, origin at the box centre,
box axes), with the box's pose (translation to its centre, rotation by its yaw) as the
ResultMesh's world transform; the optional background mesh has its vertices in metres around
the scene centre and a translation to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch

from backend.export.errors import MeshError
from backend.export.export_field import export_field, to_glb
from backend.field.composed_field import ComposedField, SceneFrame, object_grid
from backend.field.surface_mesh import SurfaceMesh
from backend.geometry.oriented_box import OrientedBox
from backend.guidance.camera_condition import camera_condition
from backend.guidance.distillation import GuidedNoise
from backend.guidance.guidance_interval import GuidanceInterval, interval_at
from backend.guidance.local_conditioning import local_conditioning
from backend.guidance.prior import DiffusionPrior
from backend.pipelines.distill_loop import DistillRun, distill, run_progress
from backend.pipelines.generate import EXPORT_ETA_S
from backend.pipelines.methods import distillation_method
from backend.pipelines.naming import mesh_name
from backend.pipelines.presets import DistillConfig
from backend.pipelines.prompt_guidance import PromptEmbeddings, prompt_view_sampler
from backend.pipelines.refine import (
    Optimised,
    export_optimised,
    initial_surface,
    refine_eta_s,
    refine_surface,
)
from backend.render.box_masks import box_masks
from backend.render.cameras import Cameras, sample_cameras
from protocol.errors import ErrorCode, ProtocolError
from protocol.fields import join
from protocol.messages import (
    ComposeRequest,
    JobWarning,
    Preview,
    Progress,
    PromptBox,
    Result,
    ResultMesh,
)


@dataclass(frozen=True)
class ComposeConfig:
    """How a compose run spends the preset's steps, and how objects start."""

    object_steps: float = 1.0
    """Object-centred steps per box, as a fraction of the preset's steps."""
    scene_steps: float = 0.25
    """Scene steps (all boxes, locally conditioned), as a fraction of the preset's steps."""
    scene_until: float = 0.5
    """Fraction of the run (in rounds of object steps) over which the scene steps are spread;
    the rest refines each object alone: a scene view shows each object at about half the
    framing tiny-shapes knows, and late scene steps stretched a cube toward its box's floor
    (docs/research/composed-scene-voxel-size.md)."""
    blob_fraction: float = 0.7
    """Start blob radius of each object, as a fraction of its grid's bound (the box's half
    edges): smaller than the box, so the prompt's shape has room to grow (a start sphere that
    fills the box would make "a sphere" trivially right and "a cube" hard)."""
    sparsity: float = 0.0
    """lambda_sparsity of compose runs. The preset's per-pixel sparsity (tuned for one object
    filling the view) erases objects that cover few pixels of a scene view (measured: with
    0.3 the red cube of the two-box test vanished and its box took the blue neighbour's
    colour; with 0 both came out right). Density outside the boxes is zero by construction."""

    def __post_init__(self) -> None:
        for name in ("object_steps", "scene_steps"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.scene_until <= 1.0:
            raise ValueError(f"scene_until must be in (0, 1], got {self.scene_until}")


COMPOSE = ComposeConfig()
"""The settings every preset uses."""

BACKGROUND_ISO_LEVEL = 5.0
"""Density per scene unit at which the background's surface is drawn. The "auto" level that
objects use is relative to the field's peak, so it would mesh the faint haze of an untouched
background; at 5 per scene unit, a layer 0.1 scene units thick (a fifth of the scene's
half-extent) is ~40 % opaque."""


def step_schedule(boxes: int, steps: int, config: ComposeConfig = COMPOSE) -> list[int | None]:
    """What each step trains: None for a scene step, i for an object-centred step of box i.

    round(steps * object_steps) rounds visit every box once; round(steps * scene_steps) scene
    steps are spread evenly over the first `scene_until` of the rounds, each before the round
    it falls in.
    """
    rounds = max(1, round(steps * config.object_steps))
    scene_total = round(steps * config.scene_steps)
    scene_rounds = max(1, round(rounds * config.scene_until))
    schedule: list[int | None] = []
    for r in range(rounds):
        if r < scene_rounds:
            due = (r + 1) * scene_total // scene_rounds - r * scene_total // scene_rounds
            schedule += [None] * due
        schedule += list(range(boxes))
    return schedule


def world_box(box: PromptBox) -> OrientedBox:
    """A request's box as an OrientedBox in world space (metres)."""
    return OrientedBox(
        centre=tuple(box.centre), half_size=tuple(0.5 * s for s in box.size), yaw_deg=box.yaw_deg
    )


def _check_request(request: ComposeRequest) -> None:
    """What the message layer cannot see: combinations the pipeline needs."""
    if request.include_background and not request.scene_prompt:
        raise ProtocolError(
            ErrorCode.BAD_VALUE,
            "include_background",
            "include_background: a background mesh needs a scene_prompt to describe it",
        )


def _empty_object(prompt: str, index: int, exc: MeshError) -> ProtocolError:
    """The error of an object that came out empty, on its box."""
    path = join("boxes", index)
    return ProtocolError(
        ErrorCode.BAD_VALUE,
        path,
        f"{path}: the object for {prompt!r} came out empty ({exc}); try another seed, "
        "method or preset",
    )


def _export_object(
    result: Optimised,
    box: OrientedBox,
    prompt: str,
    index: int,
    config: DistillConfig,
    name: str,
) -> ResultMesh:
    """One object's mesh (from its field, or its refined surface): vertices in its box frame
    (metres), the box's pose as transform. An empty object is a ProtocolError on its box."""
    try:
        mesh = export_optimised(result, config, name=name)
    except MeshError as exc:
        raise _empty_object(prompt, index, exc) from exc
    # Field frame q in [-b, b]^3 -> box frame in metres. Marching cubes samples only inside the
    # cube, but quadric decimation (and stage 2's offsets) may move a vertex a fraction of a
    # voxel past it (measured: 0.3 % of a box's half edge); the clamp keeps the promise that
    # objects stay in their boxes.
    if isinstance(result, SurfaceMesh):
        half = result.grid_half.cpu().double().numpy()  # object units
    else:
        half = np.full(3, result.bound)
    mesh.vertices = np.clip(mesh.vertices, -half, half) * (np.asarray(box.half_size) / half)
    return ResultMesh(name=name, glb=to_glb(mesh), transform=_row_major(box.pose()))


def _export_background(
    scene: ComposedField, frame: SceneFrame, config: DistillConfig, name: str
) -> ResultMesh | None:
    """The background mesh (metres around the scene centre, translated there), or None if it
    has no surface at BACKGROUND_ISO_LEVEL."""
    export = replace(
        config.export, marching=replace(config.export.marching, threshold=BACKGROUND_ISO_LEVEL)
    )
    device = next(scene.parameters()).device
    try:
        mesh = export_field(
            scene.background_view(),
            export,
            config.face_budget,
            config.texture_size,
            name=name,
            device=device,
        )
    except MeshError:
        return None
    mesh.vertices = mesh.vertices * frame.metres_per_unit  # scene units -> metres
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 3] = torch.tensor(frame.origin, dtype=torch.float64)
    return ResultMesh(name=name, glb=to_glb(mesh), transform=_row_major(pose))


def _row_major(matrix: torch.Tensor) -> tuple[float, ...]:
    return tuple(float(v) for v in matrix.reshape(-1))


def compose(
    request: ComposeRequest,
    prior: DiffusionPrior,
    config: DistillConfig,
    should_cancel: Callable[[], bool],
    settings: ComposeConfig = COMPOSE,
) -> Iterator[Progress | Preview | Result]:
    """The compose pipeline: events while optimising, an export stage, then one result with a
    mesh per box (plus the background if asked for)."""
    _check_request(request)
    torch.manual_seed(request.seed)
    generator = torch.Generator().manual_seed(request.seed)

    world = [world_box(box) for box in request.boxes]
    frame = SceneFrame.around(world)
    scene_boxes = [frame.box_in_scene(box) for box in world]
    grid = replace(object_grid(config.grid), blob_radius=settings.blob_fraction * config.grid.bound)
    field = ComposedField(
        scene_boxes,
        grid,
        config.grid if request.include_background else None,
        tuned_resolution=config.grid.resolution,
    ).to(prior.device)
    object_views = [obj.view() for obj in field.objects]

    schedule = step_schedule(len(world), config.steps, settings)
    regularisers = replace(config.regularisers, sparsity=settings.sparsity)
    run = replace(config, steps=len(schedule), regularisers=regularisers)
    box_prompts = [
        PromptEmbeddings.encode(prior, box.prompt, request.negative_prompt) for box in request.boxes
    ]
    scene_prompt = (
        PromptEmbeddings.encode(prior, request.scene_prompt, request.negative_prompt)
        if request.scene_prompt
        else None
    )

    def scene_guidance(cameras: Cameras, interval: GuidanceInterval | None) -> GuidedNoise:
        masks = box_masks(cameras, scene_boxes, config.resolution, config.resolution)
        # Each box's view prompt is relative to its own front (its yaw).
        region_text = [
            embeddings.for_cameras(replace(cameras, azimuth=cameras.azimuth - box.yaw_deg))
            for embeddings, box in zip(box_prompts, scene_boxes, strict=True)
        ]
        region_text.append(None if scene_prompt is None else scene_prompt.for_cameras(cameras))
        # Each box is told the camera in its own frame (axes R_yaw^T a); what lies outside the
        # boxes has no frame of its own, so its camera is unknown.
        region_camera = [camera_condition(cameras.c2w, box.rotation()) for box in scene_boxes]
        region_camera.append(None)
        uncond = box_prompts[0].uncond.expand(len(cameras), -1, -1)
        return local_conditioning(
            prior, region_text, uncond, masks, config.guidance_scale, region_camera, interval
        )

    # An object step samples its views as a generate run does, over the whole schedule.
    object_samplers = [prompt_view_sampler(prior, prompt, run) for prompt in box_prompts]

    def sample_views(step: int, gen: torch.Generator) -> tuple[Cameras, GuidedNoise]:
        box = schedule[step]
        if box is not None:
            return object_samplers[box](step, gen)
        cameras = sample_cameras(config.views, config.cameras, gen)
        interval = interval_at(config.guidance_interval, run_progress(step, run.steps))
        return cameras, scene_guidance(cameras, interval)

    def subject(step: int):
        box = schedule[step]
        return field if box is None else object_views[box]

    exports = len(world) + int(request.include_background)
    refine_s = refine_eta_s(config) * len(world)
    results: list[Optimised] = [obj.field for obj in field.objects]
    with distillation_method(request.method, prior, run) as method:
        yield from distill(
            DistillRun(
                field,
                prior,
                method,
                run,
                sample_views,
                generator,
                should_cancel,
                eta_tail_s=EXPORT_ETA_S * exports + refine_s,
                subject=subject,
            )
        )
        if config.refine is not None:
            # Stage 2 per object, in its own frame under its own prompt, as generate's.
            for index, (obj, prompt_box) in enumerate(
                zip(field.objects, request.boxes, strict=True)
            ):
                try:
                    surface = initial_surface(
                        obj.field, config.refine, config.export, object_views[index]
                    )
                except MeshError as exc:
                    raise _empty_object(prompt_box.prompt, index, exc) from exc
                results[index] = yield from refine_surface(
                    surface,
                    prior,
                    method,
                    config,
                    partial(prompt_view_sampler, prior, box_prompts[index]),
                    torch.Generator().manual_seed(request.seed + 1 + index),
                    should_cancel,
                    eta_tail_s=EXPORT_ETA_S * exports
                    + refine_eta_s(config) * (len(world) - index - 1),
                )

    meshes: list[ResultMesh] = []
    taken: set[str] = set()
    for index, (result, box, prompt_box) in enumerate(
        zip(results, world, request.boxes, strict=True)
    ):
        eta = EXPORT_ETA_S * (exports - index)
        yield Progress(stage="export", step=index, total=exports, loss=None, eta_s=eta)
        name = mesh_name(prompt_box.prompt, taken)
        taken.add(name)
        meshes.append(_export_object(result, box, prompt_box.prompt, index, config, name))
    if request.include_background:
        yield Progress(
            stage="export", step=len(world), total=exports, loss=None, eta_s=EXPORT_ETA_S
        )
        background = _export_background(
            field, frame, config, mesh_name(request.scene_prompt, taken)
        )
        if background is None:
            yield JobWarning(
                message="scene_prompt: the background came out empty, so the result holds "
                "the objects only"
            )
        else:
            meshes.append(background)
    yield Progress(stage="export", step=exports, total=exports, loss=None, eta_s=0.0)
    yield Result(meshes=meshes)
