"""The add-on's data in the .blend: scene settings, prompt-box settings per object, the job list.

Everything here is saved with the file, so nothing secret lives here (the server address and
CURVE keys are add-on preferences). Jobs keep their server-side id, so a reopened file can
re-fetch the results of jobs that finished while Blender was closed.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .protocol.messages import MAX_PARTICLES, PRECISIONS, TERMINAL_STATES

METHOD_ITEMS = [
    ("sds", "SDS", "Score distillation sampling (DreamFusion): fast, saturated"),
    ("vsd", "VSD", "Variational score distillation (ProlificDreamer): slower, more detail"),
    ("sjc", "SJC", "Score Jacobian chaining with perturb-and-average scoring"),
    ("clip", "CLIP", "CLIP guidance (Dream Fields), no diffusion model: the server's tiny-clip"),
]
PRESET_ITEMS = [
    ("preview", "Preview", "Fewest steps: a first look in minutes"),
    ("standard", "Standard", "More steps and samples per ray"),
    ("high", "High", "Most steps, finer grid and a larger texture"),
]
PRECISION_DESCRIPTIONS = {
    "auto": "bf16 or fp16 on a GPU; bf16 on a CPU that has it, else fp32 (the server decides)",
    "fp32": "Full precision: slowest on a GPU, always safe",
    "fp16": "Half precision: fast on any CUDA GPU",
    "bf16": "bfloat16: fast and overflow-free on recent GPUs (A100, H100, RTX 30xx and newer)",
}
PRECISION_ITEMS = [(name, name, PRECISION_DESCRIPTIONS[name]) for name in PRECISIONS]
DEFAULT_MODEL = "__server_default__"
"""The model item that sends no model: the server's default."""
_model_items: list[tuple[str, str, str]] = []
"""The last model list handed to Blender (it keeps no reference to dynamic item strings)."""


def model_items(_self: object, _context: bpy.types.Context | None) -> list[tuple[str, str, str]]:
    """The server's models from its hello reply, after "server default"."""
    from .session import SESSION  # session imports this module

    info = SESSION.state.info
    models = list(info.models) if info is not None else []
    default = info.default_model if info is not None else None
    _model_items[:] = [
        (DEFAULT_MODEL, f"Server default ({default})" if default else "Server default", ""),
        *((name, name, f"Ask the server for {name}") for name in models),
    ]
    return _model_items


EDIT_MODE_ITEMS = [
    ("texture", "Texture", "Repaint the surface; the geometry stays as it is"),
    ("shape", "Shape", "Change the geometry too"),
]
JOB_KIND_ITEMS = [
    ("generate", "Generate", "One object from a prompt"),
    ("compose", "Scene", "One object per prompt box"),
    ("edit", "Edit", "Repaint or reshape selected objects"),
]
JOB_STATE_ITEMS = [
    ("submitting", "Submitting", "Being sent to the server"),
    ("queued", "Queued", "Waiting for a worker"),
    ("running", "Running", "Being optimised"),
    ("waiting", "Waiting for Server", "The server went silent; resumes when it is back"),
    ("done", "Done", "Result imported"),
    ("failed", "Failed", "The server or the import reported an error"),
    ("cancelled", "Cancelled", "Stopped on request"),
    ("interrupted", "Interrupted", "The server or its worker stopped while the job ran"),
]
FINISHED_STATES = frozenset(str(state) for state in TERMINAL_STATES)
"""Job states that never change again (the protocol's terminal states)."""


def _select_box(settings: BoxDreamSettings, context: bpy.types.Context) -> None:
    """Selecting a row of the box list selects and activates that box object."""
    objects = context.scene.objects
    if not 0 <= settings.active_box_index < len(objects):
        return
    box = objects[settings.active_box_index]
    view_layer = context.view_layer
    if box.name not in view_layer.objects:
        return
    for obj in context.selected_objects:
        obj.select_set(False)
    box.select_set(True)
    view_layer.objects.active = box


class BoxDreamObjectSettings(bpy.types.PropertyGroup):
    """Per-object settings: whether the object is a prompt box, and its prompt."""

    is_box: BoolProperty(
        name="Prompt Box",
        description="This empty is a BoxDream prompt box: Generate Scene fills it",
        default=False,
    )
    prompt: StringProperty(
        name="Prompt",
        description="What goes in this box",
        default="",
    )
    source_job: StringProperty(
        name="Source Job",
        description="Id of the BoxDream job that made this object",
        default="",
    )
    box: PointerProperty(
        type=bpy.types.Object,
        name="Prompt Box",
        description="The prompt box this object was generated in",
    )


class BoxDreamJobTarget(bpy.types.PropertyGroup):
    """An object a job result belongs to: a prompt box (scene) or a source object (edit)."""

    obj: PointerProperty(type=bpy.types.Object, name="Object")
    object_name: StringProperty(
        name="Object Name", description="Name sent to the server for this object"
    )


class BoxDreamJob(bpy.types.PropertyGroup):
    """One job on the server, as this file follows it."""

    job_id: StringProperty(name="Job", description="Server-side job id (32 hex digits)")
    kind: EnumProperty(name="Kind", items=JOB_KIND_ITEMS, default="generate")
    title: StringProperty(name="Title", description="The prompt, for the list")
    state: EnumProperty(name="State", items=JOB_STATE_ITEMS, default="submitting")
    stage: StringProperty(name="Stage", description="Current stage reported by the server")
    step: IntProperty(name="Step", min=0)
    total: IntProperty(name="Total", min=0)
    eta_s: FloatProperty(
        name="ETA", description="Seconds until the job ends (-1: unknown)", default=-1.0
    )
    queue_position: IntProperty(name="Queue Position", min=0)
    message: StringProperty(name="Message", description="The server's error or warning, verbatim")
    preview: PointerProperty(type=bpy.types.Image, name="Preview")
    location: FloatVectorProperty(
        name="Location", subtype="TRANSLATION", size=3, description="Where Generate places it"
    )
    size: FloatProperty(name="Size", default=1.0, min=0.01, unit="LENGTH")
    targets: CollectionProperty(type=BoxDreamJobTarget)

    @property
    def finished(self) -> bool:
        """Whether the job is in a state it never leaves."""
        return self.state in FINISHED_STATES

    @property
    def progress(self) -> float:
        """Fraction of the current stage done, 0..1."""
        return self.step / self.total if self.total else 0.0


class BoxDreamSettings(bpy.types.PropertyGroup):
    """`scene.boxdream`: what Generate, Generate Scene and Edit Selected send."""

    prompt: StringProperty(
        name="Prompt", description="What to make, e.g. 'a red cube'", default="a red cube"
    )
    negative_prompt: StringProperty(name="Negative", description="What to avoid", default="")
    method: EnumProperty(name="Method", items=METHOD_ITEMS, default="sds")
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default="preview")
    seed: IntProperty(name="Seed", description="Random seed", default=0, min=0)
    model: EnumProperty(
        name="Model", description="Which of the server's models to use", items=model_items
    )
    precision: EnumProperty(
        name="Precision",
        description="Precision the server runs the diffusion model in",
        items=PRECISION_ITEMS,
        default="auto",
    )
    particles: IntProperty(
        name="Results",
        description="Different results from one prompt (VSD's particles share what it learns)",
        default=1,
        min=1,
        max=MAX_PARTICLES,
    )
    size: FloatProperty(
        name="Size",
        description="Largest dimension of a generated object",
        default=1.0,
        min=0.01,
        soft_max=10.0,
        unit="LENGTH",
    )
    scene_prompt: StringProperty(
        name="Scene Prompt",
        description="Optional prompt for the whole scene (style, setting)",
        default="",
    )
    include_background: BoolProperty(
        name="Background", description="Also make a background mesh for the scene prompt"
    )
    active_box_index: IntProperty(name="Active Box", default=-1, update=_select_box)
    edit_prompt: StringProperty(
        name="Edit Prompt", description="The change to make to the selected objects"
    )
    edit_mode: EnumProperty(name="Mode", items=EDIT_MODE_ITEMS, default="texture")
    edit_region: PointerProperty(
        type=bpy.types.Object,
        name="Region",
        description="Optional box (an empty or mesh) confining the edit to its bounds",
    )
    jobs: CollectionProperty(type=BoxDreamJob)
    active_job_index: IntProperty(name="Active Job", default=-1)


CLASSES = (BoxDreamObjectSettings, BoxDreamJobTarget, BoxDreamJob, BoxDreamSettings)


def register() -> None:
    """Register the property groups and attach them to scenes and objects."""
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.boxdream = PointerProperty(type=BoxDreamSettings)
    bpy.types.Object.boxdream = PointerProperty(type=BoxDreamObjectSettings)


def unregister() -> None:
    """Detach and unregister (reverse order)."""
    del bpy.types.Object.boxdream
    del bpy.types.Scene.boxdream
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
