"""The extension build: zips, generated manifests, the protocol wheel, and `--check`."""

from __future__ import annotations

import io
import tomllib
import zipfile
from pathlib import Path

import pytest

from blender_addon import build
from blender_addon.build import PLATFORMS, PYZMQ_VERSION, TARGETS, wheel_platforms, zip_errors

PYZMQ_FILES = (
    "cp311-cp311-win_amd64",
    "cp311-cp311-macosx_10_15_universal2",
    "cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64",
    "cp311-cp311-manylinux_2_26_aarch64.manylinux_2_28_aarch64",
    "cp312-abi3-win_amd64",
    "cp312-abi3-macosx_10_15_universal2",
    "cp312-abi3-manylinux_2_26_x86_64.manylinux_2_28_x86_64",
    "cp312-abi3-manylinux_2_26_aarch64.manylinux_2_28_aarch64",
)
"""The pyzmq wheel file names (tags) PyPI has for the bundled version."""


def _manifest(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return tomllib.loads(archive.read("blender_manifest.toml").decode())


@pytest.fixture
def wheel_cache(tmp_path: Path) -> Path:
    """A wheel cache holding stand-ins for every pyzmq wheel, so no download happens."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for tags in PYZMQ_FILES:
        with zipfile.ZipFile(cache / f"pyzmq-{PYZMQ_VERSION}-{tags}.whl", "w") as archive:
            archive.writestr("zmq/__init__.py", f"# stand-in {tags}\n")
    return cache


def test_dev_build_has_modules_manifest_and_its_own_protocol(tmp_path: Path) -> None:
    (path,) = build.build(tmp_path / "dist", wheels=False, cache=tmp_path / "cache")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        messages = archive.read("protocol/messages.py")
    assert {"blender_manifest.toml", "__init__.py", "session.py", "importer.py", "ui.py"} <= names
    assert {"protocol/__init__.py", "protocol/client.py", "protocol/PROTOCOL.md"} <= names
    assert messages == (build.PROTOCOL_DIR / "messages.py").read_bytes()
    assert b"from protocol" not in messages  # relative inside: it lives in the add-on's package
    assert not {"build.py", "manifest.py"} & names
    manifest = _manifest(path)
    assert manifest.get("wheels", []) == []  # no top-level protocol in Blender's site-packages
    assert "platforms" not in manifest
    assert zip_errors(path) == []


def test_builds_are_reproducible(tmp_path: Path) -> None:
    first = build.build(tmp_path / "a", wheels=False, cache=tmp_path / "cache_a")[0].read_bytes()
    second = build.build(tmp_path / "b", wheels=False, cache=tmp_path / "cache_b")[0].read_bytes()
    assert first == second


def test_full_build_one_zip_per_platform_and_python(tmp_path: Path, wheel_cache: Path) -> None:
    paths = build.build(tmp_path / "dist", cache=wheel_cache)
    assert len(paths) == len(PLATFORMS) * len(TARGETS)
    for path in paths:
        manifest = _manifest(path)
        (platform,) = manifest["platforms"]
        pyzmq = [w for w in manifest["wheels"] if "pyzmq" in w]
        assert len(pyzmq) == 1 and platform in wheel_platforms(pyzmq[0])
        if path.stem.endswith("blender42"):
            assert "-cp311-" in pyzmq[0]
            assert (manifest["blender_version_min"], manifest["blender_version_max"]) == (
                "4.2.0",
                "5.1.0",
            )
        else:
            assert "-abi3-" in pyzmq[0]
            assert manifest["blender_version_min"] == "5.1.0"
            assert "blender_version_max" not in manifest
        assert zip_errors(path) == [], path.name
    assert build.check(tmp_path / "dist") == []


def test_check_finds_broken_zips(tmp_path: Path, wheel_cache: Path) -> None:
    good = build.build(tmp_path / "dist", cache=wheel_cache, platforms=["linux-x64"])[0]
    with zipfile.ZipFile(good) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = tomllib.loads(files["blender_manifest.toml"].decode())
    mixed = dict(files)
    abi3 = f"wheels/pyzmq-{PYZMQ_VERSION}-cp312-abi3-win_amd64.whl"
    mixed[abi3] = b"stand-in"
    mixed["blender_manifest.toml"] = build.manifest_toml(
        {**manifest, "wheels": [*manifest["wheels"], f"./{abi3}"]}
    ).encode()
    broken = tmp_path / "dist" / "boxdream-0.1.0-broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        for name, data in mixed.items():
            if "pyzmq" not in name or name == abi3:
                archive.writestr(name, data)
    errors = zip_errors(broken)
    assert any("does not run on linux-x64" in e for e in errors)
    assert any("cp311 and abi3" in e for e in errors)
    assert any("-cp311-" in e and "not in the zip" in e for e in errors)
    assert build.main(["--check", "--dist", str(tmp_path / "dist")]) == 1


@pytest.mark.parametrize(
    ("filename", "platforms"),
    [
        ("pyzmq-1-cp311-cp311-win_amd64.whl", {"windows-x64"}),
        ("pyzmq-1-cp311-cp311-macosx_10_15_universal2.whl", {"macos-x64", "macos-arm64"}),
        ("pyzmq-1-cp311-cp311-macosx_11_0_arm64.whl", {"macos-arm64"}),
        ("x-1-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl", {"linux-x64"}),
        ("x-1-cp312-abi3-manylinux2014_aarch64.whl", {"linux-arm64"}),
        ("x-1-py3-none-any.whl", {p.blender for p in PLATFORMS}),
    ],
)
def test_wheel_platforms(filename: str, platforms: set[str]) -> None:
    assert wheel_platforms(filename) == platforms


@pytest.mark.slow
def test_real_pyzmq_wheels_are_fetched_with_pip(tmp_path: Path) -> None:
    """pip download of the real wheels for one platform (PyPI); the zips pass the check."""
    paths = build.build(tmp_path / "dist", cache=tmp_path / "cache", platforms=["linux-x64"])
    assert len(paths) == 2
    for path in paths:
        assert zip_errors(path) == []
        with zipfile.ZipFile(path) as archive:
            wheel = next(n for n in archive.namelist() if "pyzmq" in n)
            with zipfile.ZipFile(io.BytesIO(archive.read(wheel))) as inner:
                assert any(name.startswith("zmq/") for name in inner.namelist())
