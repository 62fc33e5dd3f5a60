"""Shared fixtures: the fake chat model and a loopback OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from moa_graph.graph.clients import clear_model_cache
from moa_graph.strategies import code_check
from tests.fake_chat import FakeChatModel
from tests.openai_server import FakeOpenAIServer, serve


@pytest.fixture
def fake_model() -> Callable[..., FakeChatModel]:
    """Make fake chat models: ``fake_model("a", delay=0.1)``."""

    def make(name: str = "fake", **fields: Any) -> FakeChatModel:
        return FakeChatModel(model_name=name, **fields)

    return make


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """An OpenAI-compatible server on 127.0.0.1 that echoes the last message."""
    with serve() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees another's cached clients, code checks or a real API key."""
    for name in ("OPENAI_API_KEY", "TOGETHER_API_KEY", "LANGSMITH_API_KEY", "LANGSMITH_TRACING"):
        monkeypatch.delenv(name, raising=False)
    clear_model_cache()
    code_check._remembered.cache_clear()
    yield
    clear_model_cache()
