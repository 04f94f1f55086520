"""Add-on preferences: where the server is, CURVE keys, timeouts, and a local backend.

Preferences live in Blender's user preferences, never in a .blend file; the CURVE key files
are read when connecting and their contents are not stored anywhere.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from .local_backend import LOCAL_BACKEND

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"


def user_dir(*parts: str) -> Path:
    """A folder under the extension's user directory (created), the only place it writes."""
    path = Path(bpy.utils.extension_path_user(__package__, path="/".join(parts), create=True))
    path.mkdir(parents=True, exist_ok=True)
    return path


class BoxDreamPreferences(bpy.types.AddonPreferences):
    """BoxDream preferences (Edit > Preferences > Add-ons > BoxDream)."""

    bl_idname = __package__

    server_address: StringProperty(
        name="Server",
        description="ZeroMQ address of the BoxDream server, e.g. tcp://gpu-box:5555",
        default=DEFAULT_ADDRESS,
    )
    use_curve: BoolProperty(
        name="CURVE Encryption",
        description="Encrypt and authenticate the connection with CURVE keys "
        "(needed for a server on another machine; see `boxdream keys`)",
        default=False,
    )
    server_public_key: StringProperty(
        name="Server Public Key",
        description="The server's public key file (server.key from `boxdream keys`)",
        subtype="FILE_PATH",
    )
    client_secret_key: StringProperty(
        name="Client Key Pair",
        description="This client's key pair file (NAME.key_secret from `boxdream keys`)",
        subtype="FILE_PATH",
    )
    timeout_s: FloatProperty(
        name="Timeout",
        description="Seconds of silence before the client reconnects",
        default=2.0,
        min=0.5,
        soft_max=30.0,
        unit="TIME_ABSOLUTE",
    )
    retries: IntProperty(
        name="Retries",
        description="Reconnects without an answer before the server counts as unreachable",
        default=2,
        min=0,
        max=10,
    )
    heartbeat_s: FloatProperty(
        name="Heartbeat",
        description="Seconds between status requests while jobs run",
        default=1.0,
        min=0.1,
        soft_max=10.0,
        unit="TIME_ABSOLUTE",
    )
    reconnect_s: FloatProperty(
        name="Reconnect Every",
        description="Seconds between attempts to reach a server that went away",
        default=5.0,
        min=1.0,
        soft_max=60.0,
        unit="TIME_ABSOLUTE",
    )
    job_timeout_s: FloatProperty(
        name="Batch Job Timeout",
        description="In background mode, give up waiting for a job after this many seconds "
        "(0: wait as long as the server reports progress)",
        default=0.0,
        min=0.0,
        unit="TIME_ABSOLUTE",
    )
    give_up_s: FloatProperty(
        name="Batch Give Up After",
        description="In background mode, seconds to keep trying to reach a server that went "
        "silent during a job before reporting the job as failed",
        default=120.0,
        min=0.0,
        unit="TIME_ABSOLUTE",
    )
    local_backend_command: StringProperty(
        name="Command",
        description="Command that starts a BoxDream server on this machine, e.g. the "
        "`boxdream` of a Python environment where it is installed",
        default=f"boxdream serve --bind {DEFAULT_ADDRESS}",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "server_address")
        if not bpy.app.online_access:
            layout.label(
                text="Online access is off: only servers on this computer can be used",
                icon="INFO",
            )
        box = layout.box()
        box.prop(self, "use_curve")
        column = box.column()
        column.active = self.use_curve
        column.prop(self, "server_public_key")
        column.prop(self, "client_secret_key")
        box = layout.box()
        box.label(text="Timeouts")
        box.prop(self, "timeout_s")
        box.prop(self, "retries")
        box.prop(self, "heartbeat_s")
        box.prop(self, "reconnect_s")
        box.prop(self, "job_timeout_s")
        box.prop(self, "give_up_s")
        box = layout.box()
        box.label(text="Local Backend")
        box.prop(self, "local_backend_command")
        row = box.row()
        row.operator("boxdream.local_backend", text="Start", icon="PLAY").action = "START"
        row.operator("boxdream.local_backend", text="Stop", icon="PAUSE").action = "STOP"
        box.label(text=f"Status: {LOCAL_BACKEND.status}")
        if LOCAL_BACKEND.log_path is not None:
            box.label(text=f"Log: {LOCAL_BACKEND.log_path}")
            log_column = box.column(align=True)
            log_column.scale_y = 0.7
            for line in LOCAL_BACKEND.log_tail():
                log_column.label(text=line)


def addon_preferences(context: bpy.types.Context) -> BoxDreamPreferences:
    """This add-on's preferences."""
    return context.preferences.addons[__package__].preferences


def register() -> None:
    """Register the preferences class."""
    bpy.utils.register_class(BoxDreamPreferences)


def unregister() -> None:
    """Stop a local backend started here, unregister the preferences class."""
    LOCAL_BACKEND.stop()
    bpy.utils.unregister_class(BoxDreamPreferences)
