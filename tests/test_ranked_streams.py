"""A ranker's reply names the answer; it is never streamed as the answer.

With ``aggregation: rank`` the aggregator answers "Best: 2", and the answer is the
second proposal verbatim. Every front end that streams the answer's tokens (the
library's ``stream_moa``, ``moa ask``, ``moa serve``'s SSE, ``ChatMoA.stream``) must show
that proposal, not the ranking. A ranker's stream that breaks is retried, as nobody
saw it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from langchain_core.messages import HumanMessage

from moa_graph import ChatMoA, create_moa
from moa_graph.run.streaming import Finished, Token, stream_moa
from tests.fault_server import Fault, dropped_after, fault_server
from tests.openai_server import FakeOpenAIServer
from tests.server_process import Served, serve_configs
from tests.test_cli import moa as run_moa

PICK = "beta answers: the second proposal, word for word"


def _reply(request: dict[str, Any]) -> str:
    return {"omega": "Best: 2", "alpha": "alpha answers", "beta": PICK}[request["model"]]


def _ranker_breaks_once(model: str, number: int) -> Fault | None:
    return dropped_after(1, token_delay=0.01) if (model, number) == ("omega", 1) else None


def _config(url: str) -> dict[str, Any]:
    return {
        "name": "ranked",
        "layers": [[{"model": f"openai:{m}", "base_url": url} for m in ("alpha", "beta")]],
        "aggregator": {"model": "openai:omega", "base_url": url},
        "aggregation": "rank",
        "calls": {"backoff_s": 0.01, "max_backoff_s": 0.05},
    }


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with fault_server(_ranker_breaks_once, reply=_reply) as server:
        yield server


async def test_stream_moa_yields_the_pick_never_the_ranking(upstream: FakeOpenAIServer) -> None:
    graph = create_moa(_config(upstream.url)).compile()
    events = [e async for e in stream_moa(graph, {"messages": [HumanMessage("Q?")]})]
    assert not [e for e in events if isinstance(e, Token)]
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.state["messages"][-1].text == PICK
    assert upstream.calls["omega"] == 2  # the broken ranking was retried


def test_chat_moa_stream_sends_the_pick(upstream: FakeOpenAIServer) -> None:
    chunks = list(ChatMoA(_config(upstream.url)).stream("Q?"))
    assert "".join(c.text for c in chunks) == PICK


def test_moa_ask_prints_the_pick(upstream: FakeOpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "ranked.yaml"
    path.write_text(yaml.safe_dump(_config(upstream.url)))
    result = run_moa("ask", "Q?", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == PICK


@pytest.fixture
def served(upstream: FakeOpenAIServer, tmp_path: Path) -> Iterator[Served]:
    with serve_configs(upstream, [_config(upstream.url)], tmp_path) as served:
        yield served


def test_moa_serve_streams_the_pick(served: Served) -> None:
    client = openai.OpenAI(base_url=served.moa.url, api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="ranked", messages=[{"role": "user", "content": "Q?"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == PICK
