"""Operators: generate, prompt boxes, generate scene, edit selected, cancel, connect, re-fetch,
remove a job, and start/stop a local backend.

In the UI an operator sends its request and returns at once; the job's progress, previews
and result arrive through the session's timer. In background mode (`bpy.app.background`,
where timers never fire) an operator waits for its job and imports the result before it
returns, so batch scripts can chain them; a failure is reported as an error, which bpy turns
into a RuntimeError carrying the server's message.
"""

# ruff: noqa: N801 - Blender names its classes CATEGORY_OT_name, CATEGORY_PT_name, ...

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import bpy
from bpy.props import EnumProperty, FloatVectorProperty, StringProperty
from mathutils import Vector

from .glb_writer import object_glb
from .importer import transform_of
from .local_backend import LOCAL_BACKEND
from .preferences import addon_preferences, user_dir
from .properties import DEFAULT_MODEL, BoxDreamJob, BoxDreamSettings
from .protocol.errors import ProtocolError
from .protocol.limits import Limits
from .protocol.messages import (
    ComposeRequest,
    EditRequest,
    GenerateRequest,
    JobRequest,
    MeshInput,
    PromptBox,
    validate,
)
from .session import SESSION, ConnectionBlocked, find_job

BOX_DISPLAY_SIZE = 0.5
"""Half edge of a new prompt box empty: a 1 m cube at scale 1 (size is the object's scale)."""
TILT_TOLERANCE = math.radians(0.5)


def server_limits() -> Limits:
    """The connected server's limits, or the protocol defaults before the first hello."""
    info = SESSION.state.info
    return info.limits if info is not None else Limits()


def box_half_extents(obj: bpy.types.Object) -> Vector:
    """Half edge lengths of a box object in its own axes, before its transform."""
    if obj.type == "EMPTY":
        return Vector((obj.empty_display_size,) * 3)
    corners = [Vector(corner) for corner in obj.bound_box]
    return Vector(tuple(max(abs(c[axis]) for c in corners) for axis in range(3)))


def world_box(obj: bpy.types.Object) -> tuple[float, ...]:
    """World axis-aligned bounds x0, y0, z0, x1, y1, z1 of a box object (empty or mesh)."""
    half = box_half_extents(obj)
    corners = [
        obj.matrix_world @ Vector((sx * half.x, sy * half.y, sz * half.z))
        for sx in (-1, 1)
        for sy in (-1, 1)
        for sz in (-1, 1)
    ]
    low = [min(c[axis] for c in corners) for axis in range(3)]
    high = [max(c[axis] for c in corners) for axis in range(3)]
    return (*low, *high)


def prompt_box(obj: bpy.types.Object) -> PromptBox:
    """The protocol box of a prompt-box object: world centre, edge lengths, yaw."""
    location, rotation, scale = obj.matrix_world.decompose()
    half = box_half_extents(obj)
    size = tuple(2.0 * h * abs(s) for h, s in zip(half, scale, strict=True))
    yaw = math.degrees(rotation.to_euler("XYZ").z)
    return PromptBox(
        centre=tuple(location), size=size, yaw_deg=yaw, prompt=obj.boxdream.prompt.strip()
    )


def is_tilted(obj: bpy.types.Object) -> bool:
    """Whether a box is rotated about X or Y (the protocol's boxes only turn about Z)."""
    euler = obj.matrix_world.to_euler("XYZ")
    return abs(euler.x) > TILT_TOLERANCE or abs(euler.y) > TILT_TOLERANCE


def prompt_boxes(scene: bpy.types.Scene) -> list[bpy.types.Object]:
    """The scene's prompt boxes, by name."""
    return sorted((obj for obj in scene.objects if obj.boxdream.is_box), key=lambda obj: obj.name)


def sampling_fields(settings: BoxDreamSettings) -> dict[str, Any]:
    """Negative prompt, method, preset, seed, model and precision: the request fields every
    job kind shares."""
    return {
        "negative_prompt": settings.negative_prompt.strip(),
        "method": settings.method,
        "preset": settings.preset,
        "seed": settings.seed,
        "model": None if settings.model in ("", DEFAULT_MODEL) else settings.model,
        "precision": settings.precision,
    }


def fill_targets(objects: list[bpy.types.Object]) -> Callable[[BoxDreamJob], None]:
    """A `start_job` fill that records `objects`, in order, as the job's targets."""

    def fill(job: BoxDreamJob) -> None:
        for obj in objects:
            target = job.targets.add()
            target.obj = obj
            target.object_name = obj.name

    return fill


def _ended(job_id: str, give_up_s: float) -> Callable[[], bool]:
    """Whether a job has finished, or its server has been silent for `give_up_s`."""
    silent_since: list[float] = []

    def done() -> bool:
        found = find_job(job_id)
        if found is None or found[1].finished:
            return True
        if found[1].state != "waiting":
            silent_since.clear()
            return False
        if not silent_since:
            silent_since.append(time.monotonic())
        return time.monotonic() - silent_since[0] >= give_up_s

    return done


def start_job(
    operator: bpy.types.Operator,
    context: bpy.types.Context,
    request: JobRequest,
    fill: Callable[[BoxDreamJob], None],
) -> set[str]:
    """Validate and send `request`, add its job to the scene's list; in background mode wait
    for it and import its result. Returns the operator's result set."""
    try:
        validate(request, server_limits())
    except ProtocolError as exc:
        operator.report({"ERROR"}, exc.message)
        return {"CANCELLED"}
    try:
        job_id = SESSION.submit(context, request)
    except ConnectionBlocked as exc:
        operator.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    settings = context.scene.boxdream
    job = settings.jobs.add()
    job.job_id = job_id
    job.kind = request.TYPE
    job.title = (
        request.prompt
        if not isinstance(request, ComposeRequest)
        else (request.scene_prompt or ", ".join(box.prompt for box in request.boxes))[:200]
    )
    fill(job)
    settings.active_job_index = len(settings.jobs) - 1
    if not bpy.app.background:
        operator.report({"INFO"}, f"BoxDream: sent '{job.title}'")
        return {"FINISHED"}
    return wait_for_jobs(operator, context, [job_id])


def wait_for_jobs(
    operator: bpy.types.Operator, context: bpy.types.Context, job_ids: list[str]
) -> set[str]:
    """Background mode: drain until every job ends; report the first failure verbatim."""
    prefs = addon_preferences(context)
    timeout = prefs.job_timeout_s or None
    for job_id in job_ids:
        if not SESSION.wait_for(context, _ended(job_id, prefs.give_up_s), timeout):
            SESSION.cancel(job_id)
            operator.report({"ERROR"}, f"BoxDream: job {job_id} did not end within {timeout:g} s")
            return {"CANCELLED"}
    for job_id in job_ids:
        found = find_job(job_id)
        if found is None:
            continue
        job = found[1]
        if job.state != "done":
            operator.report({"ERROR"}, f"BoxDream: {job.title}: {job.message or job.state}")
            return {"CANCELLED"}
    return {"FINISHED"}


class BOXDREAM_OT_connect(bpy.types.Operator):
    """Connect to the BoxDream server set in the preferences and ask what it offers"""

    bl_idname = "boxdream.connect"
    bl_label = "Connect"
    bl_options = frozenset({"REGISTER"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            SESSION.connect(context)
        except ConnectionBlocked as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not bpy.app.background:
            return {"FINISHED"}
        SESSION.wait_for(context, lambda: SESSION.state.status != "connecting", None)
        if SESSION.state.status != "connected":
            self.report({"ERROR"}, f"BoxDream: {SESSION.state.message}")
            return {"CANCELLED"}
        return {"FINISHED"}


class BOXDREAM_OT_generate(bpy.types.Operator):
    """Make a textured object from the prompt, standing on the 3D cursor"""

    bl_idname = "boxdream.generate"
    bl_label = "Generate"
    bl_options = frozenset({"REGISTER"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.boxdream
        request = GenerateRequest(
            prompt=settings.prompt.strip(),
            particles=settings.particles,
            **sampling_fields(settings),
        )
        cursor = context.scene.cursor.location.copy()

        def fill(job: BoxDreamJob) -> None:
            job.location = cursor
            job.size = settings.size

        return start_job(self, context, request, fill)


class BOXDREAM_OT_add_prompt_box(bpy.types.Operator):
    """Add a prompt box (a wire cube empty with its own prompt) at the 3D cursor"""

    bl_idname = "boxdream.add_prompt_box"
    bl_label = "Add Prompt Box"
    bl_options = frozenset({"REGISTER", "UNDO"})

    prompt: StringProperty(name="Prompt", description="What goes in this box", default="")
    size: FloatVectorProperty(
        name="Size", description="Edge lengths", default=(1.0, 1.0, 1.0), min=0.05,
        subtype="XYZ", unit="LENGTH", size=3,
    )  # fmt: skip

    def execute(self, context: bpy.types.Context) -> set[str]:
        box = bpy.data.objects.new("Prompt Box", None)
        box.empty_display_type = "CUBE"
        box.empty_display_size = BOX_DISPLAY_SIZE
        box.location = context.scene.cursor.location
        box.scale = self.size
        box.show_name = True
        box.boxdream.is_box = True
        box.boxdream.prompt = self.prompt
        context.collection.objects.link(box)
        for obj in context.selected_objects:
            obj.select_set(False)
        box.select_set(True)
        context.view_layer.objects.active = box
        return {"FINISHED"}


class BOXDREAM_OT_generate_scene(bpy.types.Operator):
    """Make one object per prompt box, each inside its box"""

    bl_idname = "boxdream.generate_scene"
    bl_label = "Generate Scene"
    bl_options = frozenset({"REGISTER"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.boxdream
        boxes = prompt_boxes(context.scene)
        if not boxes:
            self.report({"ERROR"}, "BoxDream: no prompt boxes; add one with Add Prompt Box")
            return {"CANCELLED"}
        empty = [box.name for box in boxes if not box.boxdream.prompt.strip()]
        if empty:
            self.report({"ERROR"}, f"BoxDream: prompt boxes without a prompt: {', '.join(empty)}")
            return {"CANCELLED"}
        tilted = [box.name for box in boxes if is_tilted(box)]
        if tilted:
            self.report(
                {"WARNING"},
                f"BoxDream: only the rotation about Z is used for {', '.join(tilted)}",
            )
        request = ComposeRequest(
            boxes=[prompt_box(box) for box in boxes],
            scene_prompt=settings.scene_prompt.strip() or None,
            include_background=settings.include_background,
            **sampling_fields(settings),
        )
        return start_job(self, context, request, fill_targets(boxes))


class BOXDREAM_OT_edit_selected(bpy.types.Operator):
    """Repaint or reshape the selected meshes from the edit prompt; the originals are hidden"""

    bl_idname = "boxdream.edit_selected"
    bl_label = "Edit Selected"
    bl_options = frozenset({"REGISTER"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return any(obj.type == "MESH" for obj in context.selected_objects)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.boxdream
        sources = sorted(
            (obj for obj in context.selected_objects if obj.type == "MESH"),
            key=lambda obj: obj.name,
        )
        depsgraph = context.evaluated_depsgraph_get()
        region = settings.edit_region
        request = EditRequest(
            meshes=[
                MeshInput(
                    name=obj.name,
                    glb=object_glb(obj, depsgraph),
                    transform=transform_of(obj.matrix_world),
                )
                for obj in sources
            ],
            prompt=settings.edit_prompt.strip(),
            mode=settings.edit_mode,
            region=None if region is None else world_box(region),
            **sampling_fields(settings),
        )
        return start_job(self, context, request, fill_targets(sources))


def _job_from(context: bpy.types.Context, job_id: str) -> BoxDreamJob | None:
    settings = context.scene.boxdream
    if job_id:
        found = find_job(job_id)
        return None if found is None else found[1]
    if 0 <= settings.active_job_index < len(settings.jobs):
        return settings.jobs[settings.active_job_index]
    return None


class BOXDREAM_OT_cancel(bpy.types.Operator):
    """Stop a running or queued BoxDream job"""

    bl_idname = "boxdream.cancel"
    bl_label = "Cancel Job"
    bl_options = frozenset({"REGISTER"})

    job_id: StringProperty(name="Job", description="Job id (empty: the active job)")

    def execute(self, context: bpy.types.Context) -> set[str]:
        job = _job_from(context, self.job_id)
        if job is None or job.finished:
            self.report({"WARNING"}, "BoxDream: no unfinished job to cancel")
            return {"CANCELLED"}
        SESSION.cancel(job.job_id)
        if bpy.app.background:
            give_up_s = addon_preferences(context).give_up_s
            SESSION.wait_for(context, _ended(job.job_id, give_up_s), None)
        return {"FINISHED"}


class BOXDREAM_OT_refetch(bpy.types.Operator):
    """Re-attach to unfinished jobs and fetch the results of jobs that ended meanwhile"""

    bl_idname = "boxdream.refetch"
    bl_label = "Re-fetch Jobs"
    bl_options = frozenset({"REGISTER"})

    job_id: StringProperty(name="Job", description="Job id (empty: every unfinished job)")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.boxdream
        jobs = [job for job in settings.jobs if not job.finished and job.state != "submitting"]
        if self.job_id:
            jobs = [job for job in settings.jobs if job.job_id == self.job_id]
        if not jobs:
            self.report({"INFO"}, "BoxDream: no job to re-fetch")
            return {"CANCELLED"}
        job_ids = [job.job_id for job in jobs]
        for job in jobs:
            if job.state in ("failed", "interrupted", "waiting"):
                job.state = "queued"
        try:
            SESSION.refetch(context, job_ids)
        except ConnectionBlocked as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if bpy.app.background:
            return wait_for_jobs(self, context, job_ids)
        return {"FINISHED"}


class BOXDREAM_OT_remove_job(bpy.types.Operator):
    """Remove a job from the list (the server keeps it; its objects stay)"""

    bl_idname = "boxdream.remove_job"
    bl_label = "Remove Job"
    bl_options = frozenset({"REGISTER", "UNDO"})

    job_id: StringProperty(name="Job", description="Job id (empty: the active job)")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.boxdream
        job = _job_from(context, self.job_id)
        if job is None:
            return {"CANCELLED"}
        index = next(i for i, entry in enumerate(settings.jobs) if entry.job_id == job.job_id)
        if job.preview is not None and job.preview.users <= 1:
            bpy.data.images.remove(job.preview)
        settings.jobs.remove(index)
        settings.active_job_index = min(settings.active_job_index, len(settings.jobs) - 1)
        return {"FINISHED"}


class BOXDREAM_OT_local_backend(bpy.types.Operator):
    """Start or stop the local BoxDream server set in the preferences"""

    bl_idname = "boxdream.local_backend"
    bl_label = "Local Backend"
    bl_options = frozenset({"REGISTER"})

    action: EnumProperty(
        name="Action",
        items=[("START", "Start", "Start the local server"), ("STOP", "Stop", "Stop it")],
        default="START",
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        if self.action == "STOP":
            LOCAL_BACKEND.stop()
            return {"FINISHED"}
        command = addon_preferences(context).local_backend_command
        try:
            LOCAL_BACKEND.start(command, user_dir("logs") / "local_backend.log")
        except (ValueError, RuntimeError, OSError) as exc:
            self.report({"ERROR"}, f"BoxDream: could not start the local backend: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"BoxDream: local backend started, log in {LOCAL_BACKEND.log_path}")
        return {"FINISHED"}


CLASSES = (
    BOXDREAM_OT_connect,
    BOXDREAM_OT_generate,
    BOXDREAM_OT_add_prompt_box,
    BOXDREAM_OT_generate_scene,
    BOXDREAM_OT_edit_selected,
    BOXDREAM_OT_cancel,
    BOXDREAM_OT_refetch,
    BOXDREAM_OT_remove_job,
    BOXDREAM_OT_local_backend,
)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
