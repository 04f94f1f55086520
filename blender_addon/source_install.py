"""Enable the add-on straight from this source tree, the way Blender enables an extension.

For tests, scripts (docs/render_addon_scene.py) and developers using bpy as a module: the
add-on folder is symlinked into a user extensions repository in `repo_dir`, which is
registered with Blender, then enabled with `addon_utils.enable(..., default_set=True)`.
The add-on imports the protocol as its own subpackage (`blender_addon/protocol` is a link to
the repository's `protocol/`; a built zip holds a copy). Not part of the extension zip.
"""

from __future__ import annotations

import importlib
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parent
EXTENSION_ID = "boxdream"


def _raise(exc: BaseException) -> None:
    raise exc


def enable_from_source(repo_dir: Path, repo_module: str = "boxdream_dev") -> str:
    """Enable the source add-on through a user repository in `repo_dir`; returns its package
    name (`bl_ext.<repo_module>.boxdream`). Needs bpy; raises whatever enabling raises."""
    import bpy

    addon_utils = importlib.import_module("addon_utils")  # importable once bpy is imported

    repos = bpy.context.preferences.extensions.repos
    if repo_module not in {repo.module for repo in repos}:
        repo_dir.mkdir(parents=True, exist_ok=True)
        repos.new(
            name="BoxDream source",
            module=repo_module,
            custom_directory=str(repo_dir),
            source="USER",
        )
    link = repo_dir / EXTENSION_ID
    if not link.exists():
        link.symlink_to(ADDON_DIR, target_is_directory=True)
    package = f"bl_ext.{repo_module}.{EXTENSION_ID}"
    if addon_utils.enable(package, default_set=True, handle_error=_raise) is None:
        raise RuntimeError(f"{package}: addon_utils.enable did not enable it")
    return package
