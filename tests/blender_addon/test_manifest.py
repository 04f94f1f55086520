"""The manifest checker: the source manifest passes, each rule rejects, and it agrees with
Blender's own validator (from the bpy wheel) on both."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from blender_addon.build import ADDON_DIR, MANIFEST_NAME
from blender_addon.manifest import (
    ManifestError,
    check_manifest,
    load_manifest,
    manifest_errors,
    manifest_toml,
)

SOURCE = load_manifest(ADDON_DIR / MANIFEST_NAME)


def blender_validator() -> ModuleType | None:
    """Blender's extension CLI module (blender_ext.py) from the bpy wheel, if installed."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(
        Path(spec.submodule_search_locations[0]).glob(
            "*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
        )
    )
    if not found:
        return None
    module_spec = importlib.util.spec_from_file_location("blender_ext", found[0])
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["blender_ext"] = module
    module_spec.loader.exec_module(module)
    return module


def test_source_manifest_is_valid() -> None:
    assert manifest_errors(SOURCE) == []
    assert SOURCE["schema_version"] == "1.0.0"
    assert SOURCE["id"] == "boxdream"
    assert set(SOURCE["permissions"]) == {"network", "files"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tagline": "x" * 65}, "tagline: has 65 characters, limit is 64"),
        ({"tagline": "Text to 3D."}, "tagline: must not end with punctuation"),
        ({"version": "1.0"}, "version: '1.0' is not a semantic version"),
        ({"blender_version_min": "4.1.0"}, "blender_version_min: 4.1.0 is below 4.2.0"),
        ({"blender_version_min": "4.2"}, "blender_version_min: '4.2' is not X.Y.Z"),
        ({"blender_version_max": "4.2.0"}, "blender_version_max: 4.2.0 must be above"),
        ({"license": ["GPL-3.0-or-later"]}, "license: 'GPL-3.0-or-later' is not an SPDX"),
        ({"license": []}, "license: must be a non-empty list"),
        ({"id": "box-dream"}, "id: must be a Python identifier"),
        ({"type": "addon"}, "type: 'addon' is not 'add-on' or 'theme'"),
        ({"schema_version": "2.0.0"}, "schema_version: must be '1.0.0'"),
        ({"permissions": {"network": ""}}, "permissions.network: the reason must be a non-empty"),
        (
            {"permissions": {"network": "Talks to servers."}},
            "permissions.network: the reason must not end",
        ),
        (
            {"permissions": {"internet": "Talks to servers"}},
            "permissions: 'internet' is not one of",
        ),
        ({"platforms": ["linux-x86_64"]}, "platforms: 'linux-x86_64' is not one of"),
        ({"tags": ["AI"]}, "tags: 'AI' is not an add-on tag"),
        ({"wheels": ["wheels\\pyzmq.whl"]}, "wheels: 'wheels\\\\pyzmq.whl' is not a path"),
        ({"wheels": ["./wheels/pyzmq.whl"]}, "wheels: 'pyzmq.whl' is not name-version"),
        ({"taglin": "typo"}, "taglin: not a manifest key"),
        ({"copyright": ["BoxDream developers"]}, "copyright: 'BoxDream developers' is not"),
    ],
)
def test_each_rule_rejects(change: dict, expected: str) -> None:
    errors = manifest_errors({**SOURCE, **change})
    assert any(error.startswith(expected) for error in errors), errors


@pytest.mark.parametrize("key", ["id", "tagline", "maintainer", "license", "blender_version_min"])
def test_missing_required_key_is_named(key: str) -> None:
    manifest = {k: v for k, v in SOURCE.items() if k != key}
    with pytest.raises(ManifestError) as caught:
        check_manifest(manifest, "probe.toml")
    assert f"{key}: missing" in caught.value.errors


def test_written_manifest_reads_back_equal() -> None:
    manifest = {**SOURCE, "platforms": ["linux-x64"], "wheels": ["./wheels/a-1-py3-none-any.whl"]}
    assert tomllib.loads(manifest_toml(manifest)) == manifest


def test_blender_validator_agrees() -> None:
    blender_ext = blender_validator()
    if blender_ext is None:
        pytest.skip("bpy (with Blender's extension tools) is not installed")
    assert (
        blender_ext.pkg_manifest_is_valid_or_error_all(SOURCE, from_repo=False, strict=True) is None
    )
    too_long = {**SOURCE, "tagline": "x" * 65}
    assert blender_ext.pkg_manifest_is_valid_or_error_all(too_long, from_repo=False, strict=True)
    assert manifest_errors(too_long)


def test_cp311_next_to_abi3_would_lock_out_python_313() -> None:
    """Why the build makes one zip per Python generation (see blender_addon/build.py)."""
    blender_ext = blender_validator()
    if blender_ext is None:
        pytest.skip("bpy (with Blender's extension tools) is not installed")
    cp311 = "pyzmq-27.3.0-cp311-cp311-win_amd64.whl"
    abi3 = "pyzmq-27.3.0-cp312-abi3-win_amd64.whl"
    pure = "boxdream_protocol-0.1.0-py3-none-any.whl"
    assert blender_ext.python_versions_from_wheels([cp311, abi3, pure]) == {(3, 11)}
    assert blender_ext.python_versions_from_wheels([abi3, pure]) == {(3,)}
