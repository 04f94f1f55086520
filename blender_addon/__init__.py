"""BoxDream for Blender: text to textured 3D objects, scenes from prompt boxes, and edits.

The add-on talks to a BoxDream server (local or a remote GPU box) over ZeroMQ with the
`protocol` package, which it imports as its own subpackage (`.protocol`, a link to the
repository's `protocol/` here, a copy in the zip) so that no other extension's `protocol`
can collide with it; the zip ships pyzmq as a wheel. The submodules
import bpy, so they are imported at `register()`: `import blender_addon` itself needs no
Blender, which lets `python -m blender_addon.build` run anywhere.
"""

from __future__ import annotations

import importlib

_MODULES = ("properties", "preferences", "operators", "ui", "session")
"""Submodules with register()/unregister(), in registration order."""


def _modules() -> list:
    return [importlib.import_module(f"{__name__}.{name}") for name in _MODULES]


def register() -> None:
    """Register every class, then start the session's timer."""
    for module in _modules():
        module.register()


def unregister() -> None:
    """Stop the session and local backend, unregister in reverse order."""
    for module in reversed(_modules()):
        module.unregister()
