"""moa-graph's OpenAI clients read streamed chunks as dicts, with the same replies.

Against the loopback fake OpenAI server, which streams one word per event and tool
calls as OpenAI does: a model built by :func:`resolve_model` answers exactly as a
plain ``ChatOpenAI`` does (text, usage, finish reason, tool calls, structured
output), streamed and not, sync and async, while the SDK builds no typed chunk.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionChunk
from pydantic import BaseModel

from moa_graph.calls.chunk_dicts import _is_chunk, dict_chunks_client, with_dict_chunks
from moa_graph.config.model import AgentSpec
from moa_graph.graph.clients import resolve_model
from tests.fake_chat import FakeChatModel
from tests.openai_server import FakeOpenAIServer, _Handler


def built(server: FakeOpenAIServer) -> Any:
    spec = AgentSpec(model="openai:m", base_url=server.url)
    return resolve_model(spec, temperature=0.0, max_tokens=64, timeout_s=30)


def plain(server: FakeOpenAIServer) -> ChatOpenAI:
    """The same client as LangChain builds it: typed chunks."""
    return ChatOpenAI(
        model="m",
        base_url=server.url,
        api_key="not-needed",  # type: ignore[arg-type]
        temperature=0.0,
        max_tokens=64,  # type: ignore[call-arg]
        stream_usage=True,
        max_retries=0,
    )


def essentials(reply: Any) -> tuple[Any, ...]:
    assert isinstance(reply, AIMessage)
    return (
        reply.content,
        reply.usage_metadata,
        reply.response_metadata.get("finish_reason"),
        [(c["name"], c["args"]) for c in reply.tool_calls],
        reply.invalid_tool_calls,
    )


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("tools", [False, True])
def test_replies_are_those_of_a_plain_client(
    openai_server: FakeOpenAIServer, stream: bool, tools: bool
) -> None:
    ours, theirs = built(openai_server), plain(openai_server)
    if tools:
        ours, theirs = ours.bind_tools([add]), theirs.bind_tools([add])
    prompt = "please add 2 and 3"

    async def both() -> tuple[Any, Any]:
        return await ours.ainvoke(prompt, stream=stream), await theirs.ainvoke(
            prompt, stream=stream
        )

    mine, reference = asyncio.run(both())
    assert essentials(mine) == essentials(reference)
    assert essentials(ours.invoke(prompt, stream=stream)) == essentials(reference)
    if tools:
        assert mine.tool_calls and mine.tool_calls[0]["name"] == "add"
    else:
        assert mine.content == "m says: please add 2 and 3"
        assert mine.usage_metadata and mine.usage_metadata["output_tokens"] > 0


SPARSE_TEXT = [
    {"delta": {"role": "assistant", "content": ""}},
    {"delta": {"content": "hello "}},
    {"delta": {"content": "world"}},
    {"finish_reason": "stop"},  # no delta, as some OpenAI-compatible servers end
]
SPARSE_CALL = [
    {
        "delta": {
            "role": "assistant",
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2, '},
                }
            ],
        }
    },
    {"delta": {"tool_calls": [{"function": {"arguments": '"b": 3'}}]}},  # no index
    {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}},
    {"delta": {}, "finish_reason": "tool_calls"},
]


def _sparse(handler: _Handler, request: dict[str, Any], number: int) -> bool:
    """Stream chunks that leave out fields the SDK's model has (see the lists above)."""
    base = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "created": 1}
    choices = SPARSE_CALL if request.get("tools") else SPARSE_TEXT
    chunks = [{"choices": [{"index": 0, **choice}]} for choice in choices]
    chunks.append({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}})
    events = [json.dumps({**base, "model": request["model"], **c}) for c in chunks]
    handler.stream(request, [*events, "[DONE]"], handler.server.shape)
    return True


@pytest.mark.parametrize("tools", [False, True])
def test_sparse_chunks_read_as_a_plain_client_reads_them(
    openai_server: FakeOpenAIServer, tools: bool
) -> None:
    openai_server.fault = _sparse
    ours, theirs = built(openai_server), plain(openai_server)
    if tools:
        ours, theirs = ours.bind_tools([add]), theirs.bind_tools([add])

    async def both() -> tuple[Any, Any]:
        return await ours.ainvoke("hi", stream=True), await theirs.ainvoke("hi", stream=True)

    mine, reference = asyncio.run(both())
    assert essentials(mine) == essentials(reference)
    assert essentials(ours.invoke("hi", stream=True)) == essentials(reference)
    if not tools:
        assert mine.content == "hello world"
        assert mine.response_metadata.get("finish_reason") is None  # as the SDK's dump


@pytest.mark.parametrize(
    ("choice", "as_dict"),
    [
        ({"index": 0, "delta": {"content": "hi"}}, True),
        ({"index": 0, "delta": None}, False),
        ({"index": 0, "finish_reason": "stop"}, False),
        ({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {}}]}}, True),
        ({"index": 0, "delta": {"tool_calls": [{"function": {}}]}}, False),
        ({"index": 0, "delta": {"tool_calls": [{"index": 0}]}}, False),
        ({"index": 0, "delta": {"tool_calls": "garbled"}}, False),
        ("garbled", False),
    ],
)
def test_only_chunks_langchain_reads_alike_stay_dicts(choice: Any, as_dict: bool) -> None:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    assert _is_chunk({**chunk, "choices": [choice]}, ChatCompletionChunk) is as_dict
    assert _is_chunk({**chunk, "choices": [], "usage": {}}, ChatCompletionChunk)
    assert not _is_chunk({**chunk, "choices": [choice]}, object)


def test_the_chat_stream_yields_dicts_and_the_root_client_typed_chunks(
    openai_server: FakeOpenAIServer,
) -> None:
    model = built(openai_server)
    request: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "one two three"}],
        "stream": True,
    }

    async def chunks(completions: Any) -> list[Any]:
        return [chunk async for chunk in await completions.create(**request)]

    dicts = asyncio.run(chunks(model.async_client))
    typed = asyncio.run(chunks(model.root_async_client.chat.completions))
    assert dicts and all(type(chunk) is dict for chunk in dicts)
    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in typed)
    assert [chunk.model_dump(exclude_unset=True) for chunk in typed] == dicts
    assert all(type(chunk) is dict for chunk in model.client.create(**request))
    # A whole reply is the SDK's typed one.
    whole = asyncio.run(model.async_client.create(**{**request, "stream": False}))
    assert whole.choices[0].message.content == "m says: one two three"


def test_a_together_model_reads_dicts_too(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "test-key")
    spec = AgentSpec(model="together:m", base_url=openai_server.url, api_key_env="TOGETHER_API_KEY")
    model: Any = resolve_model(spec, temperature=0.0, max_tokens=64, timeout_s=30)
    assert type(model).__name__ == "ChatTogether"
    assert type(model.async_client._client) is not openai.AsyncOpenAI
    reply = asyncio.run(model.ainvoke("hello there", stream=True))
    assert reply.content == "m says: hello there"


# LangChain dumps the SDK's final completion with its parsed object in a field typed
# None, and pydantic warns: a plain ChatOpenAI does the same.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_structured_output_streams_through_the_typed_root_client(
    openai_server: FakeOpenAIServer,
) -> None:
    class Sum(BaseModel):
        total: int
        words: str

    structured = built(openai_server).with_structured_output(Sum, method="json_schema")
    answer = asyncio.run(structured.ainvoke("add", stream=True))
    assert answer == Sum(total=3, words="sample words")
    assert openai_server.requests[-1]["response_format"]["type"] == "json_schema"


def test_the_copy_keeps_every_setting_and_the_connection_pool(
    openai_server: FakeOpenAIServer,
) -> None:
    root = openai.AsyncOpenAI(
        api_key="k",
        base_url=openai_server.url,
        timeout=12.0,
        max_retries=0,
        default_headers={"X-Test": "1"},
    )
    copy = dict_chunks_client(root)
    assert isinstance(copy, openai.AsyncOpenAI) and type(copy) is not openai.AsyncOpenAI
    assert (copy.api_key, copy.base_url, copy.timeout, copy.max_retries) == (
        root.api_key,
        root.base_url,
        root.timeout,
        root.max_retries,
    )
    assert copy.default_headers["X-Test"] == "1"
    assert copy._client is root._client


def test_other_models_and_sdk_subclasses_are_left_alone(
    openai_server: FakeOpenAIServer,
) -> None:
    fake = FakeChatModel(model_name="fake")
    assert with_dict_chunks(fake) is fake

    class Custom(openai.AsyncOpenAI):
        """A user's own client (as Azure's is a subclass)."""

    model = plain(openai_server)
    custom = Custom(api_key="k", base_url=openai_server.url)
    model.root_async_client, model.async_client = custom, custom.chat.completions
    with_dict_chunks(model)
    assert model.async_client._client is custom
    assert type(model.client._client) is not openai.OpenAI  # the sync one was plain
