"""An upstream that echoes the API key never gets it to a client or to another agent.

Issue 25, point 6. The loopback fake OpenAI server answers every call with the key
it was sent (its ``Authorization`` header), streamed with the key split across two
events, or in a tool call's arguments. The MoA (two proposer layers and an
aggregator, all keyed by ``MOA_TEST_UPSTREAM_KEY``) is served by a real ``moa
serve`` subprocess and used in-process as ``ChatMoA``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from moa_graph.calls import secrets
from moa_graph.calls.secrets import REDACTED, StreamRedactor, redact_data
from moa_graph.run.chat_model import ChatMoA
from tests.openai_server import FakeOpenAIServer, _Handler, serve
from tests.server_process import Served, serve_configs

KEY_ENV = "MOA_TEST_UPSTREAM_KEY"
KEY = "moa-test-7f3e9a1c5b2d4680"
SHELL = {
    "type": "function",
    "function": {
        "name": "run_shell",
        "description": "Run a shell command.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
    },
}


def _echo(handler: _Handler, request: dict[str, Any], number: int) -> bool:
    """Answer with the key the request carried: in text, split across two stream
    events, or in a tool call's arguments when the request has tools."""
    key = handler.headers["Authorization"].removeprefix("Bearer ")
    model = request["model"]
    base = {"id": f"chatcmpl-{model}-{number}", "created": 1, "model": model}
    if request.get("tools"):
        arguments = json.dumps({"command": f"curl -H 'Authorization: Bearer {key}' x"})
        call = {"index": 0, "id": "call_1", "type": "function"}
        call["function"] = {"name": "run_shell", "arguments": arguments}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "tool_calls": [call]}]
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        pieces = [f"{model} saw ", key[:9], key[9:], " today"]
        deltas = [{"role": "assistant", "content": piece} for piece in pieces]
        message = {"role": "assistant", "content": "".join(pieces)}
        finish = "stop"
    usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    if not request.get("stream"):
        choice = {"index": 0, "message": message, "finish_reason": finish}
        handler._send_json(200, {**base, "object": "chat.completion", "choices": [choice]})
        return True
    chunks = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({"choices": [], "usage": usage})
    events = [json.dumps({**base, "object": "chat.completion.chunk", **c}) for c in chunks]
    handler.stream(request, [*events, "[DONE]"], handler.server.shape)
    return True


def _config(url: str) -> dict[str, Any]:
    def agent(model: str) -> dict[str, Any]:
        return {"model": f"openai:{model}", "base_url": url, "api_key_env": KEY_ENV}

    return {
        "name": "echo-moa",
        "layers": [[agent("alpha")], [agent("beta")]],
        "aggregator": agent("gamma"),
    }


ANSWER = f"gamma saw {REDACTED} today"


def _no_key_reached_an_agent(upstream: FakeOpenAIServer) -> None:
    """The key only ever went out as the key: no agent's prompt held it."""
    assert upstream.requests
    for request in upstream.requests:
        assert KEY not in json.dumps(request) and KEY[:9] not in json.dumps(request)
    assert {a.removeprefix("Bearer ") for a in upstream.authorizations} == {KEY}
    # Layer 2 and the aggregator got the earlier layer's answers as references.
    beta = next(r for r in upstream.requests if r["model"] == "beta")
    assert f"alpha saw {REDACTED} today" in json.dumps(beta["messages"])
    gamma = next(r for r in upstream.requests if r["model"] == "gamma")
    assert f"beta saw {REDACTED} today" in json.dumps(gamma["messages"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve-redaction")
    with serve() as upstream, pytest.MonkeyPatch.context() as env:
        upstream.fault = _echo
        env.setenv(KEY_ENV, KEY)
        with serve_configs(upstream, [_config(upstream.url)], folder) as served:
            yield served
            assert KEY not in served.moa.log_text()


@pytest.fixture
def client(setup: Served) -> openai.OpenAI:
    setup.upstream.requests.clear()
    setup.upstream.authorizations.clear()
    return openai.OpenAI(base_url=setup.moa.url, api_key="unused", max_retries=0)


def _ask(client: openai.OpenAI, stream: bool, **options: Any) -> Any:
    messages: Any = [{"role": "user", "content": "What did you see?"}]
    answer = client.chat.completions.create(
        model="echo-moa", messages=messages, stream=stream, **options
    )
    return list(answer) if stream else answer


def test_served_answer_and_proposals_have_the_key_redacted(
    setup: Served, client: openai.OpenAI
) -> None:
    answer = _ask(client, False, extra_body={"moa": {"include_proposals": True}})
    assert answer.choices[0].message.content == ANSWER
    proposals = answer.model_extra["moa"]["proposals"]
    assert [p["content"] for p in proposals] == [
        f"alpha saw {REDACTED} today",
        f"beta saw {REDACTED} today",
    ]
    _no_key_reached_an_agent(setup.upstream)


def test_served_stream_has_the_key_redacted_though_split_across_events(
    setup: Served, client: openai.OpenAI
) -> None:
    chunks = _ask(client, True)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == ANSWER
    assert not any(KEY[:9] in piece or KEY[9:] in piece for piece in pieces)
    assert "gamma saw " in pieces  # the text before the key was not held back
    _no_key_reached_an_agent(setup.upstream)


@pytest.mark.parametrize("stream", [False, True])
def test_served_tool_call_arguments_have_the_key_redacted(
    setup: Served, client: openai.OpenAI, stream: bool
) -> None:
    answer = _ask(client, stream, tools=[SHELL])
    if stream:
        deltas = [d for c in answer if c.choices for d in c.choices[0].delta.tool_calls or []]
        arguments = "".join(d.function.arguments or "" for d in deltas)
    else:
        arguments = answer.choices[0].message.tool_calls[0].function.arguments
    command = f"curl -H 'Authorization: Bearer {REDACTED}' x"
    assert json.loads(arguments) == {"command": command}


@pytest.fixture
def echo_moa(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ChatMoA, FakeOpenAIServer]]:
    monkeypatch.setenv(KEY_ENV, KEY)
    with serve() as upstream:
        upstream.fault = _echo
        yield ChatMoA(_config(upstream.url)), upstream


def test_chat_moa_answer_stream_and_proposals_have_the_key_redacted(
    echo_moa: tuple[ChatMoA, FakeOpenAIServer],
) -> None:
    moa, upstream = echo_moa
    answer = moa.invoke("What did you see?")
    assert answer.text == ANSWER
    assert KEY not in json.dumps(answer.response_metadata["moa_proposals"])
    pieces = [chunk.text for chunk in moa.stream("What did you see?")]
    assert "".join(pieces) == ANSWER
    assert not any(KEY[:9] in piece for piece in pieces)
    _no_key_reached_an_agent(upstream)
    call = moa.bind_tools([SHELL]).invoke("Run it.")
    assert KEY not in json.dumps(call.tool_calls) and REDACTED in json.dumps(call.tool_calls)


async def test_chat_moa_astream_has_the_key_redacted(
    echo_moa: tuple[ChatMoA, FakeOpenAIServer],
) -> None:
    moa, _ = echo_moa
    pieces = [chunk.text async for chunk in moa.astream("What did you see?")]
    assert "".join(pieces) == ANSWER
    assert not any(KEY[:9] in piece for piece in pieces)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    secrets.register(KEY_ENV)
    return KEY


def test_a_key_split_at_any_point_is_redacted(key: str) -> None:
    text = f"before {key} between {key} after"
    for first in range(len(text)):
        for second in (first + 3, first + len(key) // 2, len(text)):
            redactor = StreamRedactor()
            cuts = [text[:first], text[first:second], text[second:]]
            out = [redactor.feed(piece) for piece in cuts] + [redactor.flush()]
            assert "".join(out) == f"before {REDACTED} between {REDACTED} after"


def test_a_piece_that_only_looks_like_a_key_start_goes_out_with_the_next(key: str) -> None:
    redactor = StreamRedactor()
    assert redactor.feed("it is moa-te") == "it is "  # may be the key's start: held
    assert redactor.feed("am work") == "moa-team work"
    assert redactor.feed(" by moa-test-7") == " by "
    assert redactor.flush() == "moa-test-7"  # the text ended: not the key


def test_without_secrets_a_stream_is_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name == KEY_ENV:
            monkeypatch.delenv(name)
    redactor = StreamRedactor()
    assert [redactor.feed(p) for p in ["moa-te", "st-7"]] == ["moa-te", "st-7"]


def test_nested_data_is_redacted_keys_too(key: str) -> None:
    data = {"args": [{"command": f"echo {key}"}, (key, 3)], key: None, "n": 1.5}
    assert redact_data(data) == {
        "args": [{"command": f"echo {REDACTED}"}, (REDACTED, 3)],
        REDACTED: None,
        "n": 1.5,
    }
