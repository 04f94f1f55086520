"""The extension manifest (`blender_manifest.toml`): read it, check it, write it.

The checks follow Blender's extension rules for schema 1.0.0 (Blender 4.2+): the required
keys, a semantic version, a tagline of at most 64 characters that does not end in
punctuation, `blender_version_min` of at least 4.2.0, SPDX licences, a reason for every
permission, known tags and platforms, and wheel paths of the wheel-file form. Pure Python:
the build and the checks run without Blender.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1.0.0"
MIN_BLENDER = (4, 2, 0)
"""Extensions (and this manifest format) exist since Blender 4.2."""
TERSE_MAX_CHARS = 64
"""Longest tagline or permission reason."""

REQUIRED_KEYS: tuple[str, ...] = (
    "schema_version",
    "id",
    "version",
    "name",
    "tagline",
    "maintainer",
    "type",
    "blender_version_min",
    "license",
)
OPTIONAL_KEYS: tuple[str, ...] = (
    "blender_version_max",
    "website",
    "copyright",
    "permissions",
    "tags",
    "platforms",
    "wheels",
    "build",
)
PERMISSIONS: frozenset[str] = frozenset({"files", "network", "clipboard", "camera", "microphone"})
PLATFORMS: frozenset[str] = frozenset(
    {"windows-x64", "windows-arm64", "macos-x64", "macos-arm64", "linux-x64", "linux-arm64"}
)
ADDON_TAGS: frozenset[str] = frozenset(
    {
        "3D View", "Add Curve", "Add Mesh", "Animation", "Bake", "Camera", "Compositing",
        "Development", "Game Engine", "Geometry Nodes", "Grease Pencil", "Import-Export",
        "Lighting", "Material", "Mesh", "Modeling", "Node", "Object", "Paint", "Physics",
        "Pipeline", "Render", "Rigging", "Scene", "Sculpt", "Sequencer", "System",
        "Text Editor", "Tracking", "User Interface", "UV",
    }
)  # fmt: skip
"""The add-on tags of Blender's extension platform (`_bpy_internal/extensions/tags.py`)."""

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
)
_BLENDER_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_SPDX = re.compile(r"SPDX:[A-Za-z0-9][A-Za-z0-9.+-]*")
_COPYRIGHT = re.compile(r"\d{4}(-\d{4})? \S.*")
_WHEEL_PATH = re.compile(r"\./wheels/[^/\"\\\s]+\.whl")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ManifestError(ValueError):
    """A manifest broke one or more rules; `errors` lists them, one sentence each."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors


def read_manifest(text: str) -> dict[str, Any]:
    """Parse manifest TOML text (raises `tomllib.TOMLDecodeError` on bad syntax)."""
    return tomllib.loads(text)


def load_manifest(path: Path) -> dict[str, Any]:
    """Parse the manifest file at `path`."""
    return read_manifest(Path(path).read_text(encoding="utf-8"))


def blender_version(text: str) -> tuple[int, int, int] | None:
    """ "4.2.0" -> (4, 2, 0); None unless it is three dot-separated numbers."""
    match = _BLENDER_VERSION.fullmatch(text)
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


def _terse_error(value: object) -> str | None:
    """Why `value` is not a terse description (tagline, permission reason), or None."""
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if value != value.strip() or _CONTROL.search(value):
        return "must have no surrounding spaces or control characters"
    if len(value) > TERSE_MAX_CHARS:
        return f"has {len(value)} characters, limit is {TERSE_MAX_CHARS}"
    if not (value[-1].isalnum() or value[-1] in ")]}"):
        return f"must not end with punctuation ({value[-1]!r})"
    return None


def _text_error(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if value != value.strip() or _CONTROL.search(value):
        return "must have no surrounding spaces or control characters"
    return None


def _string_list_error(value: object) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of strings"
    if not all(isinstance(item, str) and item for item in value):
        return "must hold non-empty strings only"
    if len(set(value)) != len(value):
        return "must not repeat an entry"
    return None


def _check_id(value: object) -> str | None:
    if not isinstance(value, str) or not value.isidentifier():
        return "must be a Python identifier"
    if "__" in value or value.startswith("_") or value.endswith("_"):
        return "must not start or end with '_' nor contain '__'"
    return None


def _check_versions(manifest: dict[str, Any], errors: list[str]) -> None:
    version = manifest.get("version")
    if "version" in manifest and not (isinstance(version, str) and _SEMVER.fullmatch(version)):
        errors.append(f"version: {version!r} is not a semantic version (like 1.2.3)")
    low_text = manifest.get("blender_version_min")
    low = blender_version(low_text) if isinstance(low_text, str) else None
    if "blender_version_min" in manifest:
        if low is None:
            errors.append(f"blender_version_min: {low_text!r} is not X.Y.Z")
        elif low < MIN_BLENDER:
            errors.append(
                f"blender_version_min: {low_text} is below 4.2.0, the first Blender with extensions"
            )
    if "blender_version_max" in manifest:
        high_text = manifest["blender_version_max"]
        high = blender_version(high_text) if isinstance(high_text, str) else None
        if high is None:
            errors.append(f"blender_version_max: {high_text!r} is not X.Y.Z")
        elif low is not None and high <= low:
            errors.append(
                f"blender_version_max: {high_text} must be above blender_version_min {low_text}"
            )


def _check_lists(manifest: dict[str, Any], errors: list[str]) -> None:
    licences = manifest.get("license")
    if "license" in manifest:
        if (error := _string_list_error(licences)) is not None:
            errors.append(f"license: {error}")
        else:
            errors.extend(
                f"license: {item!r} is not an SPDX identifier like 'SPDX:GPL-3.0-or-later'"
                for item in licences
                if not _SPDX.fullmatch(item)
            )
    if "copyright" in manifest:
        value = manifest["copyright"]
        if (error := _string_list_error(value)) is not None:
            errors.append(f"copyright: {error}")
        else:
            errors.extend(
                f"copyright: {item!r} is not 'YEAR[-YEAR] Name'"
                for item in value
                if not _COPYRIGHT.fullmatch(item)
            )
    if "tags" in manifest:
        value = manifest["tags"]
        if (error := _string_list_error(value)) is not None:
            errors.append(f"tags: {error}")
        elif manifest.get("type") == "add-on":
            errors.extend(
                f"tags: {item!r} is not an add-on tag" for item in value if item not in ADDON_TAGS
            )
    if "platforms" in manifest:
        value = manifest["platforms"]
        if (error := _string_list_error(value)) is not None:
            errors.append(f"platforms: {error}")
        else:
            errors.extend(
                f"platforms: {item!r} is not one of {', '.join(sorted(PLATFORMS))}"
                for item in value
                if item not in PLATFORMS
            )
    if "wheels" in manifest:
        value = manifest["wheels"]
        if (error := _string_list_error(value)) is not None:
            errors.append(f"wheels: {error}")
        else:
            for item in value:
                name = item.rsplit("/", 1)[-1]
                if not _WHEEL_PATH.fullmatch(item):
                    errors.append(f"wheels: {item!r} is not a path like './wheels/NAME.whl'")
                elif not 5 <= len(name[: -len(".whl")].split("-")) <= 6:
                    errors.append(
                        f"wheels: {name!r} is not name-version(-build)-python-abi-platform.whl"
                    )


def _check_permissions(manifest: dict[str, Any], errors: list[str]) -> None:
    if "permissions" not in manifest:
        return
    permissions = manifest["permissions"]
    if not isinstance(permissions, dict):
        errors.append("permissions: must be a table of permission = reason")
        return
    for key, reason in permissions.items():
        if key not in PERMISSIONS:
            errors.append(f"permissions: {key!r} is not one of {', '.join(sorted(PERMISSIONS))}")
        elif (error := _terse_error(reason)) is not None:
            errors.append(f"permissions.{key}: the reason {error}")


def manifest_errors(manifest: dict[str, Any]) -> list[str]:
    """Every rule `manifest` breaks, one sentence each naming the key; [] when valid."""
    errors = [f"{key}: missing" for key in REQUIRED_KEYS if key not in manifest]
    known = set(REQUIRED_KEYS) | set(OPTIONAL_KEYS)
    errors.extend(f"{key}: not a manifest key" for key in manifest if key not in known)
    if "schema_version" in manifest and manifest["schema_version"] != SCHEMA_VERSION:
        errors.append(f"schema_version: must be {SCHEMA_VERSION!r}")
    if "id" in manifest and (error := _check_id(manifest["id"])) is not None:
        errors.append(f"id: {error}")
    for key in ("name", "maintainer", "website"):
        if key in manifest and (error := _text_error(manifest[key])) is not None:
            errors.append(f"{key}: {error}")
    if "tagline" in manifest and (error := _terse_error(manifest["tagline"])) is not None:
        errors.append(f"tagline: {error}")
    if "type" in manifest and manifest["type"] not in ("add-on", "theme"):
        errors.append(f"type: {manifest['type']!r} is not 'add-on' or 'theme'")
    _check_versions(manifest, errors)
    _check_lists(manifest, errors)
    _check_permissions(manifest, errors)
    return errors


def check_manifest(manifest: dict[str, Any], source: str) -> None:
    """Raise `ManifestError` listing every broken rule."""
    errors = manifest_errors(manifest)
    if errors:
        raise ManifestError(source, errors)


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"manifest values are strings or lists of strings, not {type(value).__name__}")


def manifest_toml(manifest: dict[str, Any]) -> str:
    """TOML text of a manifest (top-level strings and string lists, then tables of strings)."""
    lines = []
    tables = []
    for key, value in manifest.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"
