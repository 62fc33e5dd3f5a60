"""A token counts as shown only once it leaves for a consumer (an SSE client, stdout, a
caller iterating ``stream_mode="messages"``): until then a stream that breaks part way is
a transient fault, retried, and the answer is the retry's alone.

The upstream is the keep-alive fault server; an agent's first call streams three words
of its answer and then drops the connection or sends a garbled event. The agents' models
are named ``<a|p>-<faulty role>-<fault>-<front end>``, so call numbers start at 1 in each
case and the plan reads from the name which call breaks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from langchain_core.messages import BaseMessageChunk, HumanMessage
from langchain_core.runnables import Runnable

from moa_graph import ChatMoA, create_moa
from moa_graph.errors import ModelCallError
from moa_graph.run.streaming import Finished, Token, stream_moa
from tests.fault_server import Fault, dropped_after, fault_server, malformed_after
from tests.openai_server import FakeOpenAIServer
from tests.server_process import Served, serve_configs
from tests.test_cli import moa as run_moa

ROLES = ("agg", "prop")
FAULTS = ("drop", "bad")
FRONTS = ("json", "stream")


def _answer(model: str) -> str:
    """The whole answer of ``model``: twelve words, so three are a part of it."""
    return " ".join(f"{model}-w{i}" for i in range(12))


def _reply(request: dict[str, Any]) -> str:
    return _answer(request["model"])


def _plan(model: str, number: int) -> Fault | None:
    """Break the first call of the faulty agent after three streamed words."""
    kind, role, fault, _ = model.split("-")
    if number != 1 or (kind, role) not in {("a", "agg"), ("p", "prop")}:
        return None
    make = dropped_after if fault == "drop" else malformed_after
    return make(3, token_delay=0.02)


def _config(url: str, role: str, fault: str, front: str) -> dict[str, Any]:
    case = f"{role}-{fault}-{front}"
    return {
        "name": f"moa-{case}",
        "layers": [[{"model": f"openai:p-{case}", "name": "p", "base_url": url}]],
        "aggregator": {"model": f"openai:a-{case}", "name": "a", "base_url": url},
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
    }


def _broke_mid_stream(upstream: FakeOpenAIServer, model: str, fault: str) -> bool:
    """Whether ``model``'s first call was streamed and broke (or garbled) after 3 words."""
    first = next(r for r in upstream.requests if r["model"] == model)
    # The upstream logs a stream when its handler ends: after a garbled event it sends
    # on until it notices the closed connection, which can be after the MoA reported
    # the break to its caller. Read the log once it is written.
    upstream.wait_for(lambda: any(s.model == model and s.number == 1 for s in upstream.streams))
    logs = [s for s in upstream.streams if s.model == model and s.number == 1]
    if fault == "drop":  # the connection closed after three events
        return bool(first.get("stream")) and [(s.events, s.outcome) for s in logs] == [
            (3, "dropped")
        ]
    # the garbled event followed three; the client closed the stream at it, or soon after
    return bool(first.get("stream")) and len(logs) == 1 and logs[0].events >= 3


# The library: ainvoke and stream_moa without tokens retry; so does stream_moa for a
# proposer, whose tokens it never yields.


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("role", ROLES)
async def test_ainvoke_answers_with_the_retry(role: str, fault: str) -> None:
    with fault_server(_plan, reply=_reply) as upstream:
        config = _config(upstream.url, role, fault, "lib")
        graph = create_moa(config).compile()
        out = await graph.ainvoke({"messages": [HumanMessage("Q?")]})
        faulty = f"{role[0]}-{role}-{fault}-lib"
        assert _broke_mid_stream(upstream, faulty, fault)
        assert upstream.calls[faulty] == 2
    assert out["messages"][-1].text == _answer(f"a-{role}-{fault}-lib")
    assert out["proposals"][0].error is None
    assert out["proposals"][0].content == _answer(f"p-{role}-{fault}-lib")


@pytest.mark.parametrize("fault", FAULTS)
async def test_stream_moa_without_tokens_answers_with_the_retry(fault: str) -> None:
    with fault_server(_plan, reply=_reply) as upstream:
        graph = create_moa(_config(upstream.url, "agg", fault, "lib")).compile()
        question = {"messages": [HumanMessage("Q?")]}
        events = [e async for e in stream_moa(graph, question, tokens=False)]
        assert _broke_mid_stream(upstream, f"a-agg-{fault}-lib", fault)
    assert not [e for e in events if isinstance(e, Token)]
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.state["messages"][-1].text == _answer(f"a-agg-{fault}-lib")


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_streaming_proposer_nobody_is_shown_is_retried(fault: str) -> None:
    # create_moa's default: proposers stream under stream_mode="messages" too, but
    # stream_moa yields only the answer's tokens.
    with fault_server(_plan, reply=_reply) as upstream:
        graph = create_moa(_config(upstream.url, "prop", fault, "lib")).compile()
        question = {"messages": [HumanMessage("Q?")]}
        events = [e async for e in stream_moa(graph, question)]
        assert _broke_mid_stream(upstream, f"p-prop-{fault}-lib", fault)
    shown = "".join(e.text for e in events if isinstance(e, Token))
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.state["proposals"][0].error is None
    assert final.state["proposals"][0].content == _answer(f"p-prop-{fault}-lib")
    assert shown == final.state["messages"][-1].text == _answer(f"a-prop-{fault}-lib")


@pytest.mark.parametrize("fault", FAULTS)
async def test_an_answer_shown_to_a_messages_caller_is_still_never_spliced(fault: str) -> None:
    with fault_server(_plan, reply=_reply) as upstream:
        graph = create_moa(_config(upstream.url, "agg", fault, "lib")).compile()
        shown: list[str] = []
        with pytest.raises(ModelCallError, match="already shown"):
            async for event in stream_moa(graph, {"messages": [HumanMessage("Q?")]}):
                if isinstance(event, Token):
                    shown.append(event.text)
        assert upstream.calls[f"a-agg-{fault}-lib"] == 1
    assert shown and _answer(f"a-agg-{fault}-lib").startswith("".join(shown))


# ChatMoA's streams: only the tokens it passes on count as shown.


async def _chunks(moa: Runnable[str, BaseMessageChunk], sync: bool) -> list[BaseMessageChunk]:
    if sync:
        return list(moa.stream("Q?"))
    return [chunk async for chunk in moa.astream("Q?")]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("sync", [True, False])
async def test_chat_moa_streams_retry_a_proposer_nobody_was_shown(sync: bool, fault: str) -> None:
    with fault_server(_plan, reply=_reply) as upstream:
        moa = ChatMoA(_config(upstream.url, "prop", fault, "lib"))
        chunks = await _chunks(moa, sync)
        assert _broke_mid_stream(upstream, f"p-prop-{fault}-lib", fault)
        assert upstream.calls[f"p-prop-{fault}-lib"] == 2
    proposal = chunks[-1].response_metadata["moa_proposals"][0]
    assert proposal["error"] is None
    assert proposal["content"] == _answer(f"p-prop-{fault}-lib")
    assert "".join(c.text for c in chunks) == _answer(f"a-prop-{fault}-lib")


def _add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pytest.mark.parametrize("held", ["rank", "tools"])
@pytest.mark.parametrize("sync", [True, False])
async def test_chat_moa_streams_retry_an_answer_held_whole(sync: bool, held: str) -> None:
    # A ranker's reply is not the answer, and with tools bound the reply may be calls:
    # ChatMoA holds the aggregator's tokens and sends the answer whole at the end, so a
    # stream that broke was seen by nobody.
    with fault_server(_plan, reply=_reply) as upstream:
        config = _config(upstream.url, "agg", "drop", "lib")
        if held == "rank":
            moa: Runnable[str, BaseMessageChunk] = ChatMoA({**config, "aggregation": "rank"})
        else:
            moa = ChatMoA(config).bind_tools([_add])
        chunks = await _chunks(moa, sync)
        assert _broke_mid_stream(upstream, "a-agg-drop-lib", "drop")
        assert upstream.calls["a-agg-drop-lib"] == 2
    answer = chunks[0]
    for chunk in chunks[1:]:
        answer += chunk
    if held == "rank":
        assert answer.text == _answer("p-agg-drop-lib")  # the ranker's pick, verbatim
    else:
        assert [call["name"] for call in answer.tool_calls] == ["_add"]  # type: ignore[attr-defined]


# The command line: `moa ask --json` prints nothing before the answer.


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("role", ROLES)
def test_moa_ask_json_answers_with_the_retry(tmp_path: Path, role: str, fault: str) -> None:
    with fault_server(_plan, reply=_reply) as upstream:
        path = tmp_path / "moa.yaml"
        path.write_text(yaml.safe_dump(_config(upstream.url, role, fault, "json")))
        done = run_moa("ask", "Q?", "--config", str(path), "--json")
        assert _broke_mid_stream(upstream, f"{role[0]}-{role}-{fault}-json", fault)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["answer"] == _answer(f"a-{role}-{fault}-json")
    assert out["proposals"][0]["error"] is None
    assert out["proposals"][0]["content"] == _answer(f"p-{role}-{fault}-json")


# `moa serve`: a non-streamed request is answered with the retry; a streamed one whose
# answer broke after tokens went out ends in a clean error event.


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("shown")
    with fault_server(_plan, reply=_reply) as upstream:
        configs = [
            _config(upstream.url, role, fault, front)
            for role in ROLES
            for fault in FAULTS
            for front in FRONTS
        ]
        with serve_configs(upstream, configs, folder) as served:
            yield served


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("role", ROLES)
def test_moa_serve_answers_a_non_streamed_request_with_the_retry(
    served: Served, role: str, fault: str
) -> None:
    body = {
        "model": f"moa-{role}-{fault}-json",
        "messages": [{"role": "user", "content": "Q?"}],
        "moa": {"include_proposals": True},
    }
    response = httpx.post(f"{served.moa.url}/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] == _answer(f"a-{role}-{fault}-json")
    proposal = answer["moa"]["proposals"][0]
    assert proposal["error"] is None
    assert proposal["content"] == _answer(f"p-{role}-{fault}-json")
    assert _broke_mid_stream(served.upstream, f"{role[0]}-{role}-{fault}-json", fault)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("role", ROLES)
def test_moa_serve_streams_the_retry_or_ends_in_an_error_never_spliced(
    served: Served, role: str, fault: str
) -> None:
    client = openai.OpenAI(base_url=served.moa.url, api_key="unused", max_retries=0)
    pieces: list[str] = []
    error: openai.APIError | None = None
    try:
        stream = client.chat.completions.create(
            model=f"moa-{role}-{fault}-stream",
            messages=[{"role": "user", "content": "Q?"}],
            stream=True,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    except openai.APIError as failure:
        error = failure
    text, answer = "".join(pieces), _answer(f"a-{role}-{fault}-stream")
    assert _broke_mid_stream(served.upstream, f"{role[0]}-{role}-{fault}-stream", fault)
    if role == "prop":  # nobody saw the proposer's tokens: retried, the answer whole
        assert error is None and text == answer
    else:  # the answer's first words went out: no retry may follow them
        assert error is not None and text and answer.startswith(text)
        assert "\n" not in error.message and "already shown" in error.message
        assert served.upstream.calls[f"a-{role}-{fault}-stream"] == 1
