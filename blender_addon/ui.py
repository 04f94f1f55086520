"""The 3D viewport sidebar tab "BoxDream": connection, generate, prompt boxes, edit, jobs."""

# ruff: noqa: N801 - Blender names its classes CATEGORY_OT_name, CATEGORY_PT_name, ...

from __future__ import annotations

import textwrap

import bpy

from .operators import prompt_boxes
from .preferences import addon_preferences
from .session import SESSION

STATUS_ICONS = {
    "disconnected": "UNLINKED",
    "connecting": "SORTTIME",
    "connected": "LINKED",
    "unreachable": "ERROR",
    "blocked": "CANCEL",
}
STATE_ICONS = {
    "submitting": "EXPORT",
    "queued": "SORTTIME",
    "running": "PLAY",
    "waiting": "UNLINKED",
    "done": "CHECKMARK",
    "failed": "ERROR",
    "cancelled": "CANCEL",
    "interrupted": "X",
}
WRAP_CHARS = 42
"""Characters per line when wrapping long messages into labels."""


def wrapped_labels(layout: bpy.types.UILayout, text: str, icon: str = "NONE") -> None:
    """`text` as several labels (a sidebar label does not wrap by itself)."""
    column = layout.column(align=True)
    for index, line in enumerate(textwrap.wrap(text, WRAP_CHARS) or [""]):
        column.label(text=line, icon=icon if index == 0 else "BLANK1")


def format_eta(seconds: float) -> str:
    """ "ETA 1 min 05 s", or "" for unknown (-1)."""
    if seconds < 0:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    return f"ETA {minutes} min {secs:02d} s" if minutes else f"ETA {secs} s"


class BoxDreamPanel:
    """Where all BoxDream panels live."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "BoxDream"


class BOXDREAM_PT_main(BoxDreamPanel, bpy.types.Panel):
    """Connection state and what the server offers."""

    bl_label = "BoxDream"
    bl_idname = "BOXDREAM_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        state = SESSION.state
        address = addon_preferences(context).server_address
        row = layout.row()
        row.label(text=f"{state.status.capitalize()}: {address}", icon=STATUS_ICONS[state.status])
        row.operator("boxdream.connect", text="", icon="FILE_REFRESH")
        if state.message:
            box = layout.box()
            box.alert = True
            wrapped_labels(box, state.message, icon="ERROR")
        info = state.info
        if info is None:
            return
        column = layout.column(align=True)
        column.label(text=f"Server {info.server_version}, device {info.device}")
        column.label(text=f"Model: {info.default_model or 'server default'}")
        settings = info.model_settings or {}
        if settings:
            column.label(
                text=f"Family {settings.get('family')}, precision {settings.get('precision')}"
            )
        vocabulary = info.vocabulary or {}
        shapes = vocabulary.get("shapes")
        colours = vocabulary.get("colours")
        if shapes or colours:
            box = layout.box()
            box.label(text="This model knows", icon="INFO")
            if shapes:
                wrapped_labels(box, "Shapes: " + ", ".join(map(str, shapes)))
            if colours:
                wrapped_labels(box, "Colours: " + ", ".join(map(str, colours)))


class BOXDREAM_PT_generate(BoxDreamPanel, bpy.types.Panel):
    """Prompt, sampling settings and Generate."""

    bl_label = "Generate"
    bl_idname = "BOXDREAM_PT_generate"
    bl_parent_id = "BOXDREAM_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.boxdream
        layout.prop(settings, "prompt", text="")
        layout.prop(settings, "negative_prompt")
        row = layout.row(align=True)
        row.prop(settings, "method", text="")
        row.prop(settings, "preset", text="")
        row = layout.row(align=True)
        row.prop(settings, "model", text="")
        row.prop(settings, "precision", text="")
        row = layout.row(align=True)
        row.prop(settings, "seed")
        row.prop(settings, "size")
        layout.prop(settings, "particles")
        layout.operator("boxdream.generate", icon="SHADERFX")


class BOXDREAM_UL_boxes(bpy.types.UIList):
    """The scene's prompt boxes with their prompts (other objects are filtered out)."""

    bl_idname = "BOXDREAM_UL_boxes"

    def draw_item(
        self,
        context: bpy.types.Context,
        layout: bpy.types.UILayout,
        data: bpy.types.AnyType,
        item: bpy.types.Object,
        icon: int,
        active_data: bpy.types.AnyType,
        active_property: str,
        index: int = 0,
        flt_flag: int = 0,
    ) -> None:
        row = layout.row(align=True)
        row.label(text=item.name, icon="CUBE")
        row.prop(item.boxdream, "prompt", text="", emboss=False)

    def filter_items(
        self, context: bpy.types.Context, data: bpy.types.AnyType, propname: str
    ) -> tuple[list[int], list[int]]:
        objects = getattr(data, propname)
        flags = [self.bitflag_filter_item if obj.boxdream.is_box else 0 for obj in objects]
        return flags, []


class BOXDREAM_PT_boxes(BoxDreamPanel, bpy.types.Panel):
    """Prompt boxes and Generate Scene."""

    bl_label = "Prompt Boxes"
    bl_idname = "BOXDREAM_PT_boxes"
    bl_parent_id = "BOXDREAM_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        scene = context.scene
        settings = scene.boxdream
        layout.operator("boxdream.add_prompt_box", icon="ADD")
        layout.template_list(
            "BOXDREAM_UL_boxes", "", scene, "objects", settings, "active_box_index", rows=3
        )
        active = context.active_object
        if active is not None and active.boxdream.is_box:
            layout.prop(active.boxdream, "prompt", text=active.name)
        layout.prop(settings, "scene_prompt")
        layout.prop(settings, "include_background")
        row = layout.row()
        row.enabled = bool(prompt_boxes(scene))
        row.operator("boxdream.generate_scene", icon="SCENE_DATA")


class BOXDREAM_PT_edit(BoxDreamPanel, bpy.types.Panel):
    """Edit the selected meshes."""

    bl_label = "Edit"
    bl_idname = "BOXDREAM_PT_edit"
    bl_parent_id = "BOXDREAM_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.boxdream
        meshes = [obj.name for obj in context.selected_objects if obj.type == "MESH"]
        if meshes:
            wrapped_labels(layout, "Selected: " + ", ".join(meshes), icon="MESH_DATA")
        else:
            layout.label(text="Select meshes to edit", icon="INFO")
        layout.prop(settings, "edit_prompt", text="")
        layout.prop(settings, "edit_mode", expand=True)
        layout.prop(settings, "edit_region")
        layout.operator("boxdream.edit_selected", icon="BRUSH_DATA")


class BOXDREAM_UL_jobs(bpy.types.UIList):
    """Jobs of this scene, newest last."""

    bl_idname = "BOXDREAM_UL_jobs"

    def draw_item(
        self,
        context: bpy.types.Context,
        layout: bpy.types.UILayout,
        data: bpy.types.AnyType,
        item: bpy.types.AnyType,
        icon: int,
        active_data: bpy.types.AnyType,
        active_property: str,
        index: int = 0,
        flt_flag: int = 0,
    ) -> None:
        row = layout.row(align=True)
        row.label(text=item.title or item.job_id[:8], icon=STATE_ICONS[item.state])
        if item.state == "running" and item.total:
            row.label(text=f"{round(100 * item.progress)}%")


class BOXDREAM_PT_jobs(BoxDreamPanel, bpy.types.Panel):
    """Jobs: progress, stage, ETA, preview, messages, cancel and re-fetch."""

    bl_label = "Jobs"
    bl_idname = "BOXDREAM_PT_jobs"
    bl_parent_id = "BOXDREAM_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.boxdream
        row = layout.row()
        row.template_list(
            "BOXDREAM_UL_jobs", "", settings, "jobs", settings, "active_job_index", rows=3
        )
        column = row.column(align=True)
        column.operator("boxdream.refetch", text="", icon="FILE_REFRESH").job_id = ""
        column.operator("boxdream.remove_job", text="", icon="REMOVE").job_id = ""
        if not 0 <= settings.active_job_index < len(settings.jobs):
            return
        job = settings.jobs[settings.active_job_index]
        box = layout.box()
        state_name = job.bl_rna.properties["state"].enum_items[job.state].name
        box.label(text=f"{job.kind.capitalize()}: {state_name}", icon=STATE_ICONS[job.state])
        if job.state in ("running", "queued", "waiting", "submitting"):
            if job.total:
                box.progress(
                    factor=job.progress,
                    type="BAR",
                    text=f"{job.stage} {job.step}/{job.total}  {format_eta(job.eta_s)}",
                )
            elif job.state == "queued":
                box.label(text=f"Queue position {job.queue_position}")
            box.operator("boxdream.cancel", icon="CANCEL").job_id = job.job_id
        if job.message:
            alert = box.column()
            alert.alert = job.state in ("failed", "interrupted", "waiting")
            wrapped_labels(alert, job.message, icon="INFO")
        if job.preview is not None and job.preview.preview is not None:
            box.template_icon(icon_value=job.preview.preview.icon_id, scale=8.0)
        if job.state in ("failed", "interrupted", "waiting"):
            box.operator("boxdream.refetch", icon="FILE_REFRESH").job_id = job.job_id


CLASSES = (
    BOXDREAM_PT_main,
    BOXDREAM_PT_generate,
    BOXDREAM_UL_boxes,
    BOXDREAM_PT_boxes,
    BOXDREAM_PT_edit,
    BOXDREAM_UL_jobs,
    BOXDREAM_PT_jobs,
)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
