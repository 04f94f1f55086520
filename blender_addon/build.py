"""Build the installable extension zips, and check manifests: no Blender binary needed.

    python -m blender_addon.build              # dist/boxdream-VERSION-PLATFORM-blenderNN.zip
    python -m blender_addon.build --no-wheels  # dist/boxdream-VERSION-dev.zip (no pyzmq)
    python -m blender_addon.build --check      # validate the source manifest and dist/*.zip

Each zip holds the add-on modules with the `protocol/` package inside the extension's own
folder (never a top-level `protocol` in Blender's shared site-packages, where another
extension's could collide), a manifest generated from `blender_manifest.toml`, and `wheels/`:
the pyzmq wheel of the zip's platform, fetched with `pip download` (kept in build/wheels/ for
offline rebuilds).

Why two zips per platform: Blender derives the Python versions an extension supports from
its wheels, and a cp311 wheel next to an abi3 one narrows that to 3.11 alone, so Blender
5.1+ (Python 3.13) would refuse a zip holding both. One zip carries the cp311 wheel and
`blender_version_max = "5.1.0"` (Blender 4.2-5.0); the other the cp312-abi3 wheel and
`blender_version_min = "5.1.0"`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from blender_addon.manifest import (
    ManifestError,
    check_manifest,
    load_manifest,
    manifest_errors,
    manifest_toml,
    read_manifest,
)

ADDON_DIR = Path(__file__).resolve().parent
REPO_ROOT = ADDON_DIR.parent
PROTOCOL_DIR = REPO_ROOT / "protocol"
MANIFEST_NAME = "blender_manifest.toml"
BUILD_ONLY_MODULES = frozenset({"build.py", "manifest.py", "source_install.py"})
"""Modules of this folder for building and developing the extension, left out of it."""
PYZMQ_VERSION = "27.3.0"
"""The pyzmq release bundled (has cp311 and cp312-abi3 wheels for every platform below)."""
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
"""Fixed timestamp of zip entries, so the same sources give the same bytes."""


@dataclass(frozen=True)
class Platform:
    """A Blender platform and the pip platform tag that selects its pyzmq wheel."""

    blender: str
    """Blender's platform name, e.g. "linux-x64"."""
    pip_tag: str
    """Platform tag for `pip download --platform` (pip also accepts older compatible tags)."""


@dataclass(frozen=True)
class PythonTarget:
    """The Blender releases sharing one Python, and the pyzmq wheel flavour for them."""

    label: str
    """Suffix of the zip name."""
    python_version: str
    """`pip download --python-version`."""
    wheel_tag: str
    """Python and ABI tags the chosen wheel must carry, e.g. "cp311-cp311"."""
    blender_min: str
    """blender_version_min of the zip."""
    blender_max: str | None
    """blender_version_max of the zip (exclusive), or None."""


PLATFORMS: tuple[Platform, ...] = (
    Platform("windows-x64", "win_amd64"),
    Platform("macos-arm64", "macosx_11_0_arm64"),
    Platform("macos-x64", "macosx_10_15_x86_64"),
    Platform("linux-x64", "manylinux_2_28_x86_64"),
    Platform("linux-arm64", "manylinux_2_28_aarch64"),
)
TARGETS: tuple[PythonTarget, ...] = (
    PythonTarget("blender42", "3.11", "cp311-cp311", "4.2.0", "5.1.0"),
    PythonTarget("blender51", "3.13", "cp312-abi3", "5.1.0", None),
)


def wheel_platforms(filename: str) -> set[str]:
    """Blender platforms a wheel file serves, from its platform tag(s).

    "manylinux_2_28_x86_64" -> linux-x64, "win_amd64" -> windows-x64, "macosx_10_15_universal2"
    -> macos-x64 and macos-arm64, "any" -> every platform.
    """
    platforms: set[str] = set()
    for tag in filename.removesuffix(".whl").split("-")[-1].split("."):
        if tag == "any":
            return {platform.blender for platform in PLATFORMS}
        if tag.startswith("win"):
            system = "windows"
        elif tag.startswith("macosx"):
            system = "macos"
        elif "linux" in tag:
            system = "linux"
        else:
            continue
        if tag.endswith("universal2"):
            platforms.update({f"{system}-x64", f"{system}-arm64"})
        elif tag.endswith(("x86_64", "amd64")):
            platforms.add(f"{system}-x64")
        elif tag.endswith(("aarch64", "arm64")):
            platforms.add(f"{system}-arm64")
    return platforms


def _zip_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _cached_pyzmq(cache: Path, target: PythonTarget, platform: Platform) -> Path | None:
    for path in sorted(cache.glob(f"pyzmq-{PYZMQ_VERSION}-{target.wheel_tag}-*.whl")):
        if platform.blender in wheel_platforms(path.name):
            return path
    return None


def pyzmq_wheel(cache: Path, target: PythonTarget, platform: Platform) -> Path:
    """The pyzmq wheel for one target and platform: from `cache`, else `pip download`ed."""
    found = _cached_pyzmq(cache, target, platform)
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", f"pyzmq=={PYZMQ_VERSION}",
        "--only-binary=:all:", "--no-deps", "--quiet",
        "--platform", platform.pip_tag, "--python-version", target.python_version,
        "--implementation", "cp", "--dest", str(cache),
    ]  # fmt: skip
    if target.wheel_tag.endswith("abi3"):
        command += ["--abi", "abi3"]
    subprocess.run(command, check=True)
    found = _cached_pyzmq(cache, target, platform)
    if found is None:
        raise FileNotFoundError(
            f"pip downloaded no pyzmq {PYZMQ_VERSION} {target.wheel_tag} wheel for "
            f"{platform.blender} into {cache}"
        )
    return found


def addon_files() -> dict[str, bytes]:
    """The add-on's runtime files by archive name (the manifest excluded: it is generated),
    with the `protocol/` package inside the extension's own folder (`protocol/*.py`), where
    only this extension imports it (as `bl_ext.<repository>.boxdream.protocol`)."""
    files = {
        path.name: path.read_bytes()
        for path in sorted(ADDON_DIR.glob("*.py"))
        if path.name not in BUILD_ONLY_MODULES
    }
    for path in sorted(PROTOCOL_DIR.glob("*")):
        if path.is_file() and path.suffix in (".py", ".md"):
            files[f"protocol/{path.name}"] = path.read_bytes()
    return files


def write_extension_zip(
    path: Path, manifest: dict, files: dict[str, bytes], wheels: Iterable[Path]
) -> Path:
    """Write one extension zip: manifest (with its `wheels` list when there are wheels),
    modules, wheels/."""
    wheels = list(wheels)
    if wheels:
        manifest = {**manifest, "wheels": [f"./wheels/{wheel.name}" for wheel in wheels]}
    check_manifest(manifest, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        _zip_entry(archive, MANIFEST_NAME, manifest_toml(manifest).encode())
        for name, data in files.items():
            _zip_entry(archive, name, data)
        for wheel in wheels:
            _zip_entry(archive, f"wheels/{wheel.name}", wheel.read_bytes())
    return path


def _target_manifest(source: dict, target: PythonTarget, platform: Platform) -> dict:
    manifest = {key: value for key, value in source.items() if key != "permissions"}
    manifest["blender_version_min"] = target.blender_min
    if target.blender_max is not None:
        manifest["blender_version_max"] = target.blender_max
    manifest["platforms"] = [platform.blender]
    if "permissions" in source:
        manifest["permissions"] = source["permissions"]
    return manifest


def build(
    dist: Path,
    *,
    wheels: bool = True,
    cache: Path | None = None,
    platforms: Iterable[str] | None = None,
) -> list[Path]:
    """Build the extension zips into `dist`; return their paths.

    `wheels=False` builds one platform-independent development zip without pyzmq (for a
    Blender whose Python already has it, and for offline builds). `platforms` limits the
    Blender platforms built (default: all of `PLATFORMS`).
    """
    source = load_manifest(ADDON_DIR / MANIFEST_NAME)
    check_manifest(source, MANIFEST_NAME)
    version = source["version"]
    cache = cache or REPO_ROOT / "build" / "wheels"
    files = addon_files()
    if not wheels:
        dev = dist / f"boxdream-{version}-dev.zip"
        return [write_extension_zip(dev, source, files, [])]
    chosen = set(platforms) if platforms is not None else {p.blender for p in PLATFORMS}
    unknown = chosen - {p.blender for p in PLATFORMS}
    if unknown:
        raise ValueError(f"platforms: {', '.join(sorted(unknown))} not known")
    built = []
    for target in TARGETS:
        for platform in PLATFORMS:
            if platform.blender not in chosen:
                continue
            name = f"boxdream-{version}-{platform.blender.replace('-', '_')}-{target.label}.zip"
            built.append(
                write_extension_zip(
                    dist / name,
                    _target_manifest(source, target, platform),
                    files,
                    [pyzmq_wheel(cache, target, platform)],
                )
            )
    return built


def zip_errors(path: Path) -> list[str]:
    """Every problem of a built zip: manifest rules, wheels missing, unlisted or off-platform."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if MANIFEST_NAME not in names:
            return [f"{MANIFEST_NAME}: missing"]
        manifest = read_manifest(archive.read(MANIFEST_NAME).decode("utf-8"))
    errors = manifest_errors(manifest)
    if "__init__.py" not in names:
        errors.append("__init__.py: missing")
    listed = {wheel.removeprefix("./") for wheel in manifest.get("wheels", [])}
    errors.extend(f"wheels: {wheel} is listed but not in the zip" for wheel in listed - names)
    present = {name for name in names if name.startswith("wheels/")}
    errors.extend(f"wheels: {wheel} is in the zip but not listed" for wheel in present - listed)
    for platform in manifest.get("platforms", []):
        for wheel in listed:
            if platform not in wheel_platforms(wheel):
                errors.append(f"wheels: {wheel} does not run on {platform}")
    abi3 = any("-abi3-" in wheel for wheel in listed)
    cp311 = any("-cp311-" in wheel for wheel in listed)
    if abi3 and cp311:
        errors.append("wheels: cp311 and abi3 wheels together make Blender 5.1+ refuse the zip")
    if cp311 and manifest.get("blender_version_max") is None:
        errors.append("blender_version_max: needed with cp311 wheels (Blender 5.1+ is 3.13)")
    return errors


def check(dist: Path) -> list[str]:
    """Problems of the source manifest and of every zip in `dist`, prefixed with the file."""
    source = load_manifest(ADDON_DIR / MANIFEST_NAME)
    problems = [f"{MANIFEST_NAME}: {error}" for error in manifest_errors(source)]
    for path in sorted(dist.glob("boxdream-*.zip")):
        problems.extend(f"{path.name}: {error}" for error in zip_errors(path))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m blender_addon.build", description="Build or check the extension zips."
    )
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist", help="output folder")
    parser.add_argument("--no-wheels", action="store_true", help="one dev zip without pyzmq")
    parser.add_argument("--wheel-cache", type=Path, default=None, help="pip download folder")
    parser.add_argument(
        "--platform", action="append", dest="platforms", help="only this Blender platform"
    )
    parser.add_argument("--check", action="store_true", help="validate manifests, build nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.dist)
        for problem in problems:
            print(problem, file=sys.stderr)
        zips = len(list(args.dist.glob("boxdream-*.zip")))
        print(f"{'FAILED' if problems else 'ok'}: source manifest and {zips} zip(s) checked")
        return 1 if problems else 0
    try:
        paths = build(
            args.dist, wheels=not args.no_wheels, cache=args.wheel_cache, platforms=args.platforms
        )
    except (ManifestError, ValueError, FileNotFoundError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
