"""BoxDream's small CPU kernels in C (the field's `cpu_trilinear.c`, `cpu_field_table.c`,
`cpu_variation.c`, the renderer's `cpu_importance.c` and `cpu_composite.c`): built with the
machine's C compiler on first use and loaded with ctypes.

Each file is built with `$CC` (else `cc`), with OpenMP where the compiler has it, into
`$BOXDREAM_KERNEL_CACHE` (default ~/.cache/boxdream/kernels), named by a hash of the source,
the compiler and the flags; about 1 s once for all of them. Without a compiler the callers fall
back to PyTorch with one warning. BOXDREAM_CPU_KERNEL=0 turns the kernels off.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

log = logging.getLogger(__name__)

BUILDS = (("-O3", "-fPIC", "-shared", "-fopenmp"), ("-O3", "-fPIC", "-shared"))
"""Compiler flags tried in turn: with OpenMP (multi-threaded), then without (one thread, e.g.
Apple clang)."""
BUILD_TIMEOUT_S = 120
"""Longest a build may take before the callers fall back to PyTorch."""
DTYPES = {torch.float32: "f32", torch.float64: "f64"}
"""Dtypes the kernels are built for, and their C suffixes; others go to PyTorch."""
REALS = {torch.float32: ctypes.c_float, torch.float64: ctypes.c_double}
"""The C scalar type of each of `DTYPES`."""
POINTER, SIZE, THREADS = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
"""Argument types of the kernels: a tensor's data pointer, a size, a thread count."""

Signature = Callable[[type], list[type]]
"""A kernel's argument types, given the type of its real scalars (`REALS`)."""


_reference = False
"""Set by `reference_path`."""
_warned: set[str] = set()
"""Compilers whose failure has been logged as a warning: the other kernels' failures with the
same compiler are logged at debug level, so a machine without one sees one warning."""


@contextmanager
def reference_path() -> Iterator[None]:
    """Within it no C kernel runs, and grid lookups are `F.grid_sample` in one batch: the field's
    path of 2026-12-06 (commit 9b3480e), which `boxdream bench` times beside today's."""
    global _reference
    before, _reference = _reference, True
    try:
        yield
    finally:
        _reference = before


def on_reference_path() -> bool:
    """Whether `reference_path` is in force."""
    return _reference


def _cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "boxdream"
    return Path(os.environ.get("BOXDREAM_KERNEL_CACHE", default / "kernels"))


def _build(source: Path, compiler: str, flags: tuple[str, ...]) -> Path:
    """The shared library of `source` built with `flags`, from the cache or built now."""
    key = hashlib.sha256(
        b"\0".join(x.encode() for x in (source.read_text(), compiler, *flags, platform.machine()))
    ).hexdigest()[:16]
    library = _cache_dir() / f"{source.stem}-{key}.so"
    if not library.exists():
        library.parent.mkdir(parents=True, exist_ok=True)
        partial = library.with_name(f"{library.name}.{os.getpid()}.partial")
        subprocess.run(
            [compiler, *flags, "-o", str(partial), str(source)],
            check=True,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        os.replace(partial, library)  # atomic: concurrent builders each leave a whole file
    return library


def load(
    source: Path,
    fallback: str,
    signatures: dict[str, Signature],
    restypes: dict[str, type] | None = None,
) -> ctypes.CDLL | None:
    """The loaded library of the C file `source`, with the argument types of each kernel
    `name` of `signatures` (and the result type of each of `restypes`; none by default) set on
    its builds for every dtype (`{name}_f32`, `{name}_f64`), or None (turned off, or no build
    worked: said once in the log, with `fallback`, what the caller does instead)."""
    if os.environ.get("BOXDREAM_CPU_KERNEL", "1") == "0":
        return None
    compiler = os.environ.get("CC", "cc")
    failures = []
    for flags in BUILDS:
        try:
            library = ctypes.CDLL(str(_build(source, compiler, flags)))
            for name, signature in signatures.items():
                for dtype, real in REALS.items():
                    kernel(library, name, dtype).argtypes = signature(real)
                    kernel(library, name, dtype).restype = (restypes or {}).get(name)
            return library
        except subprocess.CalledProcessError as error:
            failures.append(f"{' '.join(flags)}: {error.stderr.strip()[-300:]}")
        except (OSError, subprocess.TimeoutExpired) as error:
            failures.append(f"{' '.join(flags)}: {error}")
    log.log(
        logging.DEBUG if compiler in _warned else logging.WARNING,
        "the CPU kernel %s could not be built with %r (%s); %s, and without its C kernels the CPU "
        "render is about 2.5x slower",
        source.name,
        compiler,
        "; ".join(failures),
        fallback,
    )
    _warned.add(compiler)
    return None


def available(library: Callable[[], ctypes.CDLL | None], values: torch.Tensor) -> bool:
    """Whether a kernel of `library` (a module's cached loader) can take `values`: off the
    reference path, on CPU, in one of `DTYPES`, and the library built (asked last, so a call
    that cannot run builds nothing). The callers add their shape conditions."""
    return (
        not _reference
        and values.device.type == "cpu"
        and values.dtype in DTYPES
        and library() is not None
    )


def kernel(library: ctypes.CDLL, name: str, dtype: torch.dtype) -> ctypes._CFuncPtr:
    """The build of kernel `name` for `dtype` (one of `DTYPES`) in `library`."""
    return getattr(library, f"{name}_{DTYPES[dtype]}")


def threads() -> int:
    """The kernels' thread count: torch's."""
    return torch.get_num_threads()
