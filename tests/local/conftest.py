"""Fixtures of the local runtime tests: a private models directory, installed weights."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from moa_graph.local import get_model, shutdown
from moa_graph.local.weights import WeightsStatus, weights_status


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, so the markers work before pyproject.toml lists them.
    config.addinivalue_line("markers", "local: real generation with the embedded llama.cpp runtime")
    config.addinivalue_line("markers", "local_large: needs the 1.1 GB qwen2.5-coder-1.5b weights")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """One compute thread per server unless set: test runs often share the CPUs."""
    monkeypatch.setenv("MOA_GRAPH_THREADS", os.environ.get("MOA_GRAPH_THREADS", "1"))


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty models directory, used instead of the user's cache."""
    directory = tmp_path / "models"
    monkeypatch.setenv("MOA_GRAPH_CACHE", str(directory))
    return directory


def require_installed(name: str) -> None:
    """Fail with the install command when a model's weights are missing."""
    if weights_status(get_model(name)) in (WeightsStatus.MISSING, WeightsStatus.CORRUPTED):
        pytest.fail(f"weights of '{name}' missing: run `moa models install {name}` first")


@pytest.fixture
def smollm2() -> Iterator[str]:
    """The name of the small model, installed; its server is stopped after the test."""
    require_installed("smollm2-135m")
    yield "smollm2-135m"
    shutdown()


@pytest.fixture
def qwen_1_5b() -> Iterator[str]:
    """The name of the 1.5B model, installed; its server is stopped after the test."""
    require_installed("qwen2.5-coder-1.5b")
    yield "qwen2.5-coder-1.5b"
    shutdown()
