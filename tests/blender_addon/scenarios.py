"""Add-on scenarios that run inside a bpy subprocess (see bpy_runner.py); each returns plain
JSON observations that the pytest side checks.

Every scenario enables the extension the way Blender does: a user extensions repository
(in the throw-away BLENDER_USER_RESOURCES of the test) holding the add-on folder (symlinked
from the source tree) or the built zip, then `addon_utils.enable(..., default_set=True)`.
"""

from __future__ import annotations

import importlib
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bpy
from mathutils import Matrix, Vector

REPO_MODULE = "boxdream_test"
PACKAGE = f"bl_ext.{REPO_MODULE}.boxdream"
FILTER_ITEM = 1 << 30
"""`UIList.bitflag_filter_item` of a list instance (Blender's UILST_FLT_ITEM)."""


def _add_repo() -> None:
    bpy.context.preferences.extensions.repos.new(
        name="BoxDream test", module=REPO_MODULE, custom_directory=str(_repo_dir()), source="USER"
    )


def _repo_dir() -> Path:
    path = Path(os.environ["BLENDER_USER_RESOURCES"]) / "test_repo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def enable_addon() -> Any:
    """Enable the add-on from the source tree (symlinked into a user repository)."""
    from blender_addon.source_install import enable_from_source

    return importlib.import_module(enable_from_source(_repo_dir(), REPO_MODULE))


def addon(name: str) -> Any:
    """A submodule of the enabled add-on, e.g. addon("session")."""
    return importlib.import_module(f"{PACKAGE}.{name}")


def configure(address: str, timeout_s: float = 0.5, retries: int = 1) -> Any:
    """Point the preferences at `address` with short timeouts; returns the preferences."""
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.server_address = address
    prefs.timeout_s = timeout_s
    prefs.retries = retries
    prefs.heartbeat_s = 0.5
    prefs.reconnect_s = 1.0
    prefs.job_timeout_s = 1500.0
    return prefs


def _object_report(obj: bpy.types.Object) -> dict:
    """World bounds, transform and texture of an imported object."""
    corners = [obj.matrix_world @ Vector(corner) for corner in obj.bound_box]
    images = []
    for slot in obj.material_slots:
        if slot.material is None or slot.material.node_tree is None:
            continue
        for node in slot.material.node_tree.nodes:
            if node.type == "TEX_IMAGE" and node.image is not None:
                linked = any(
                    link.to_node.type == "BSDF_PRINCIPLED" and link.to_socket.name == "Base Color"
                    for link in node.outputs["Color"].links
                )
                pixels = list(node.image.pixels[:4096])
                images.append(
                    {
                        "size": list(node.image.size),
                        "packed": node.image.packed_file is not None,
                        "base_color": linked,
                        "mean_rgb": [
                            sum(pixels[channel::4]) / (len(pixels) / 4) for channel in range(3)
                        ],
                    }
                )
    return {
        "name": obj.name,
        "type": obj.type,
        "collections": [c.name for c in obj.users_collection],
        "low": [min(c[axis] for c in corners) for axis in range(3)],
        "high": [max(c[axis] for c in corners) for axis in range(3)],
        "matrix": [list(row) for row in obj.matrix_world],
        "faces": len(obj.data.polygons) if obj.type == "MESH" else 0,
        "images": images,
        "source_job": obj.boxdream.source_job,
        "hidden": obj.hide_get(),
        "hide_render": obj.hide_render,
    }


def _jobs() -> list[dict]:
    return [
        {
            "job_id": job.job_id,
            "kind": job.kind,
            "state": job.state,
            "message": job.message,
            "stage": job.stage,
            "step": job.step,
            "total": job.total,
            "preview": job.preview.name if job.preview is not None else None,
            "preview_size": list(job.preview.size) if job.preview is not None else None,
        }
        for job in bpy.context.scene.boxdream.jobs
    ]


def _run_operator(call: Any) -> dict:
    """Run an operator; returns its outcome or the RuntimeError text bpy raised, and time."""
    start = time.monotonic()
    try:
        outcome = sorted(call())
        error = None
    except RuntimeError as exc:
        outcome, error = None, str(exc)
    return {"outcome": outcome, "error": error, "seconds": time.monotonic() - start}


# ---------------------------------------------------------------------------- scenarios


def enabled() -> dict:
    """Enable the add-on; report what it registered and where it writes."""
    module = enable_addon()
    preferences = addon("preferences")
    user = preferences.user_dir("probe")
    return {
        "module": module.__name__,
        "operators": sorted(name for name in dir(bpy.ops.boxdream) if not name.startswith("_")),
        "panels": sorted(name for name in dir(bpy.types) if name.startswith("BOXDREAM_PT_")),
        "lists": sorted(name for name in dir(bpy.types) if name.startswith("BOXDREAM_UL_")),
        "scene_settings": hasattr(bpy.context.scene, "boxdream"),
        "prefs_address": bpy.context.preferences.addons[PACKAGE].preferences.server_address,
        "user_dir": str(user),
        "user_resources": os.environ["BLENDER_USER_RESOURCES"],
        "online_access": bpy.app.online_access,
        "background": bpy.app.background,
        "gltf_enabled": importlib.import_module("addon_utils").check("io_scene_gltf2")[1],
    }


def prompt_boxes() -> dict:
    """Add two prompt boxes by operator (one turned 30 degrees) and read them back."""
    enable_addon()
    operators = addon("operators")
    scene = bpy.context.scene
    scene.cursor.location = (1.0, 2.0, 0.5)
    bpy.ops.boxdream.add_prompt_box(prompt="a red cube", size=(1.0, 2.0, 0.5))
    first = bpy.context.active_object
    scene.cursor.location = (-2.0, 0.0, 1.0)
    bpy.ops.boxdream.add_prompt_box(prompt="a blue sphere")
    second = bpy.context.active_object
    second.rotation_euler = (0.0, 0.0, math.radians(30.0))
    bpy.context.view_layer.update()
    boxes = operators.prompt_boxes(scene)
    return {
        "boxes": [
            {
                "name": box.name,
                "is_box": box.boxdream.is_box,
                "prompt": box.boxdream.prompt,
                "display": box.empty_display_type,
                "wire_edge": 2 * box.empty_display_size,
                "protocol": operators.prompt_box(box).to_fields(),
            }
            for box in boxes
        ],
        "first": first.name,
        "second": second.name,
        "selected": [obj.name for obj in bpy.context.selected_objects],
    }


def _connected(**info: Any) -> None:
    """The session as if connected to a server whose hello reply has `info` (over defaults)."""
    Limits = addon("protocol.limits").Limits
    ServerInfo = addon("protocol.messages").ServerInfo
    session = addon("session")
    fields = {
        "server_version": "0.1.0",
        "protocol_version": 1,
        "device": "cpu",
        "models": ["tiny-shapes"],
        "default_model": "tiny-shapes",
        "methods": ["sds"],
        "presets": {"sds": ["preview"]},
        "limits": Limits(),
        **info,
    }
    session.SESSION.state = session.ConnectionState(
        status="connected", address="tcp://127.0.0.1:5555", info=ServerInfo(**fields)
    )


def panels() -> dict:
    """Draw every panel and list with an RNA-checked layout, disconnected and connected."""
    from rna_layout import Drawn, RnaCheckedLayout

    enable_addon()
    ui = addon("ui")

    def draw_all() -> Drawn:
        drawn = Drawn()
        for cls in ui.CLASSES:
            if issubclass(cls, bpy.types.Panel):
                cls.draw(SimpleNamespace(layout=RnaCheckedLayout(drawn)), bpy.context)
        return drawn

    def draw_items(ui_list: type, data: Any, propname: str) -> list[str]:
        drawn = Drawn()
        flag = FILTER_ITEM
        items = getattr(data, propname)
        flags, _order = (
            ui_list.filter_items(
                SimpleNamespace(bitflag_filter_item=flag), bpy.context, data, propname
            )
            if hasattr(ui_list, "filter_items")
            else ([flag] * len(items), [])
        )
        for index, item in enumerate(items):
            if flags[index] & flag:
                ui_list.draw_item(
                    SimpleNamespace(), bpy.context, RnaCheckedLayout(drawn), data, item, 0,
                    data, propname, index, 0,
                )  # fmt: skip
        return drawn.labels

    disconnected = draw_all()
    scene = bpy.context.scene
    bpy.ops.boxdream.add_prompt_box(prompt="a red cube")
    bpy.ops.mesh.primitive_cube_add()
    _connected(vocabulary={"shapes": ["cube", "sphere"], "colours": ["red", "blue"]})
    states = ["running", "queued", "waiting", "done", "failed"]
    for index, state in enumerate(states):
        job = scene.boxdream.jobs.add()
        job.job_id = f"{index:032x}"
        job.title = f"job {state}"
        job.state = state
        job.stage, job.step, job.total, job.eta_s = "coarse", 30, 150, 65.0
        job.message = "tiny-shapes does not understand this prompt fully" * (state == "failed")
    image = bpy.data.images.new("preview probe", 8, 8)
    image.preview_ensure()
    scene.boxdream.jobs[0].preview = image
    connected = {}
    for index, state in enumerate(states):
        scene.boxdream.active_job_index = index  # the active job decides what Jobs shows
        connected[state] = draw_all().__dict__
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    drawn_prefs = Drawn()
    type(prefs).draw(LayoutProxy(prefs, RnaCheckedLayout(drawn_prefs)), bpy.context)
    return {
        "preferences": drawn_prefs.__dict__,
        "disconnected": disconnected.__dict__,
        "connected": connected,
        "box_rows": draw_items(ui.BOXDREAM_UL_boxes, scene, "objects"),
        "job_rows": draw_items(ui.BOXDREAM_UL_jobs, scene.boxdream, "jobs"),
    }


class LayoutProxy:
    """An RNA object seen through `self` in a draw method, with a recording `layout`."""

    def __init__(self, target: Any, layout: Any) -> None:
        self._target = target
        self.layout = layout

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def request_fields() -> dict:
    """The model list from the hello reply, and what a job sends for model, precision and
    particles."""
    enable_addon()
    operators = addon("operators")
    GenerateRequest = addon("protocol.messages").GenerateRequest

    settings = bpy.context.scene.boxdream
    default = operators.sampling_fields(settings)
    _connected(
        models=["tiny-shapes", "sd-2.1-base"],
        default_model="sd-2.1-base",
        model_settings={"family": "latent", "precision": "bf16"},
    )
    items = [item[0] for item in addon("properties").model_items(settings, bpy.context)]
    settings.model, settings.precision, settings.particles = "tiny-shapes", "fp16", 3
    chosen = operators.sampling_fields(settings)
    request = GenerateRequest(prompt="a red cube", particles=settings.particles, **chosen)
    return {
        "items": items,
        "default": [default["model"], default["precision"]],
        "chosen": [request.model, request.precision, request.particles],
    }


def dead_server(address: str) -> dict:
    """Generate against an address where nothing listens: a clear error, quickly."""
    enable_addon()
    configure(address, timeout_s=0.5, retries=1)
    generate = _run_operator(bpy.ops.boxdream.generate)
    connect = _run_operator(bpy.ops.boxdream.connect)
    return {"generate": generate, "connect": connect, "jobs": _jobs()}


def online_access_blocked(address: str) -> dict:
    """A non-loopback server while Blender's online access is off is refused up front."""
    enable_addon()
    configure(address)
    session = addon("session")
    outcome = _run_operator(bpy.ops.boxdream.generate)
    return {
        "online_access": bpy.app.online_access,
        "generate": outcome,
        "status": session.SESSION.state.status,
        "thread_started": session.SESSION.active,
        "jobs": _jobs(),
    }


def local_backend(command: str) -> dict:
    """Start and stop a local backend command from the preferences; read its log."""
    enable_addon()
    prefs = configure("tcp://127.0.0.1:1")
    prefs.local_backend_command = command
    backend = addon("local_backend").LOCAL_BACKEND
    started = _run_operator(lambda: bpy.ops.boxdream.local_backend(action="START"))
    running = backend.running
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "ready" not in backend.log_tail():
        time.sleep(0.1)
    log = backend.log_tail()
    again = _run_operator(lambda: bpy.ops.boxdream.local_backend(action="START"))
    stopped = _run_operator(lambda: bpy.ops.boxdream.local_backend(action="STOP"))
    return {
        "started": started,
        "running_after_start": running,
        "log": log,
        "log_path": str(backend.log_path),
        "second_start": again,
        "stopped": stopped,
        "running_after_stop": backend.running,
        "status": backend.status,
    }


def installed_zip(zip_path: str) -> dict:
    """Install a built extension zip as Blender does and enable it."""
    import sys

    _add_repo()
    outcome = _run_operator(
        lambda: bpy.ops.extensions.package_install_files(
            filepath=zip_path, repo=REPO_MODULE, enable_on_install=True
        )
    )
    enabled = PACKAGE in bpy.context.preferences.addons
    protocol = sys.modules.get(f"{PACKAGE}.protocol")
    site_packages = (
        Path(os.environ["BLENDER_USER_RESOURCES"])
        / "extensions/.local/lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    )
    installed = sorted(p.name for p in site_packages.iterdir()) if site_packages.is_dir() else []
    return {
        "site_packages": installed,
        "install": outcome,
        "enabled": enabled,
        "files": sorted(p.name for p in (_repo_dir() / "boxdream").iterdir()),
        "protocol_file": getattr(protocol, "__file__", None),
        "top_level_protocol": "protocol" in sys.modules,
        "operators": sorted(n for n in dir(bpy.ops.boxdream) if not n.startswith("_")),
    }


def generate(address: str, prompt: str) -> dict:
    """Generate at the 3D cursor in background mode; report the imported object."""
    enable_addon()
    configure(address, timeout_s=5.0, retries=3)
    scene = bpy.context.scene
    scene.cursor.location = (2.0, -1.0, 0.25)
    settings = scene.boxdream
    settings.prompt = prompt
    settings.preset = "preview"
    settings.size = 1.5
    outcome = _run_operator(bpy.ops.boxdream.generate)
    collection = bpy.data.collections.get("BoxDream")
    objects = [_object_report(obj) for obj in collection.objects] if collection else []
    return {"outcome": outcome, "objects": objects, "jobs": _jobs()}


def compose(address: str) -> dict:
    """Two prompt boxes, one turned 30 degrees; Generate Scene; report objects and boxes."""
    enable_addon()
    configure(address, timeout_s=5.0, retries=3)
    scene = bpy.context.scene
    scene.cursor.location = (1.5, 0.0, 0.5)
    bpy.ops.boxdream.add_prompt_box(prompt="a red cube", size=(1.0, 1.0, 1.0))
    scene.cursor.location = (-1.5, 0.5, 0.75)
    bpy.ops.boxdream.add_prompt_box(prompt="a blue sphere", size=(1.2, 1.0, 1.5))
    bpy.context.active_object.rotation_euler.z = math.radians(30.0)
    bpy.context.view_layer.update()
    outcome = _run_operator(bpy.ops.boxdream.generate_scene)
    operators = addon("operators")
    boxes = {
        box.name: {
            "matrix": [list(row) for row in box.matrix_world],
            "half": list(operators.box_half_extents(box)),
        }
        for box in operators.prompt_boxes(scene)
    }
    collection = bpy.data.collections.get("BoxDream")
    objects = []
    for obj in collection.objects if collection else []:
        report = _object_report(obj)
        box = obj.boxdream.box
        report["box"] = box.name if box is not None else None
        if box is not None:
            to_box = box.matrix_world.inverted() @ obj.matrix_world
            local = [to_box @ v.co for v in obj.data.vertices]
            report["in_box_low"] = [min(v[axis] for v in local) for axis in range(3)]
            report["in_box_high"] = [max(v[axis] for v in local) for axis in range(3)]
        objects.append(report)
    return {"outcome": outcome, "objects": objects, "boxes": boxes, "jobs": _jobs()}


def edit(address: str) -> dict:
    """Edit a moved, turned and scaled cube; report the source and the edited object."""
    enable_addon()
    configure(address, timeout_s=5.0, retries=3)
    bpy.ops.mesh.primitive_cube_add(size=1.0)
    source = bpy.context.active_object
    source.name = "Crate"
    source.matrix_world = (
        Matrix.Translation((0.5, -2.0, 1.0))
        @ Matrix.Rotation(math.radians(40.0), 4, "Z")
        @ Matrix.Diagonal((1.5, 1.0, 0.8, 1.0))
    )
    bpy.context.view_layer.update()
    settings = bpy.context.scene.boxdream
    settings.edit_prompt = "a blue cube"
    settings.edit_mode = "texture"
    outcome = _run_operator(bpy.ops.boxdream.edit_selected)
    collection = bpy.data.collections.get("BoxDream")
    objects = [_object_report(obj) for obj in collection.objects] if collection else []
    return {
        "outcome": outcome,
        "source": _object_report(source),
        "objects": objects,
        "jobs": _jobs(),
    }


class PausableProxy:
    """A loopback TCP forwarder whose traffic can be held, to fake a network outage."""

    def __init__(self, upstream_port: int) -> None:
        import socket
        import threading

        self._upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            downstream, _ = self._listener.accept()
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: Any, sink: Any) -> None:
        while True:
            self.flowing.wait()
            try:
                data = source.recv(65536)
                if not data:
                    break
                self.flowing.wait()
                sink.sendall(data)
            except OSError:
                break


def outage(address: str, hold_after_s: float, hold_for_s: float) -> dict:
    """Generate through a proxy that holds all traffic for a while mid-job, from `hold_after_s`
    after the job's first event (a fixed time from the start would miss a job that a fast
    machine finishes first): the job goes "waiting" within seconds and resumes (and finishes)
    when traffic flows again. Reports when the hold began (`held_at`, seconds from the start)."""
    import threading

    enable_addon()
    proxy = PausableProxy(int(address.rsplit(":", 1)[1]))
    prefs = configure(f"tcp://127.0.0.1:{proxy.port}", timeout_s=1.0, retries=1)
    prefs.give_up_s = 600.0
    session = addon("session")
    seen: list[tuple[float, str]] = []
    job_started = threading.Event()
    held_at: list[float] = []
    start = time.monotonic()
    apply = session.SESSION._apply

    def recording_apply(context: Any, notice: Any) -> None:
        seen.append((time.monotonic() - start, type(notice).__name__))
        if type(notice).__name__ == "JobEvent":
            job_started.set()
        apply(context, notice)

    session.SESSION._apply = recording_apply

    def hold() -> None:
        job_started.wait()
        time.sleep(hold_after_s)
        held_at.append(time.monotonic() - start)
        proxy.flowing.clear()
        time.sleep(hold_for_s)
        proxy.flowing.set()

    threading.Thread(target=hold, daemon=True).start()
    bpy.context.scene.boxdream.prompt = "a green cube"
    outcome = _run_operator(bpy.ops.boxdream.generate)
    return {"outcome": outcome, "notices": seen, "jobs": _jobs(), "held_at": held_at}
