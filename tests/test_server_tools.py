"""``moa serve`` with tools and answer formats, as OpenAI clients use them.

One ``moa serve`` subprocess serves a MoA whose agents call the loopback fake OpenAI
server, which answers a request with tools as providers do (``tests.tool_replies``):
with tool calls of the tools named in the last message (else the first), or, after a
tool result, with text that quotes it. Models that cannot take tools or an answer
format are served in-process, where the config may hold a fake chat model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from moa_graph.config.model import MoAConfig
from moa_graph.server.app import create_app
from tests.fake_chat import FakeChatModel
from tests.openai_server import FakeOpenAIServer, serve
from tests.server_process import Served, serve_configs

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city, for some days.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "days", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_ARGS = {"city": "sample city", "days": 3, "unit": "celsius"}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "temperature": {"type": "number"},
        "sunny": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["city", "temperature", "sunny", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("serve-tools")
    with serve() as upstream:

        def agent(model: str) -> dict[str, Any]:
            return {"model": f"openai:{model}", "base_url": upstream.url}

        config = {
            "name": "tool-moa",
            "layers": [[agent("alpha"), agent("beta")]],
            "aggregator": agent("gamma"),
        }
        with serve_configs(upstream, [config], directory) as served:
            yield served


@pytest.fixture
def client(setup: Served) -> Iterator[openai.OpenAI]:
    setup.upstream.arguments = None
    yield openai.OpenAI(base_url=setup.moa.url, api_key="unused", max_retries=0)
    setup.upstream.arguments = None


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def _since(upstream: FakeOpenAIServer, start: int, model: str) -> list[dict[str, Any]]:
    return [r for r in upstream.requests[start:] if r["model"] == model]


def _assembled(chunks: list[Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Assemble streamed tool calls as OpenAI clients do; also return their deltas."""
    calls: dict[int, dict[str, Any]] = {}
    deltas = []
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            deltas.append(delta)
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = delta.id or call["id"]
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
    return [calls[index] for index in sorted(calls)], deltas


def _plain_calls(message: Any) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls or []
    ]


def test_tool_calls_plain_and_streamed_in_the_openai_format(
    setup: Served, client: openai.OpenAI
) -> None:
    start = len(setup.upstream.requests)
    completion = client.chat.completions.create(
        model="tool-moa", messages=_user("What is the weather in Paris?"), tools=[WEATHER]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    plain = _plain_calls(choice.message)
    assert [(c["name"], json.loads(c["arguments"])) for c in plain] == [
        ("get_weather", WEATHER_ARGS)
    ]
    assert plain[0]["id"].startswith("call_gamma_")
    # Only the aggregator is bound; proposers are told of the tools in their prompt.
    (aggregator,) = _since(setup.upstream, start, "gamma")
    assert aggregator["tools"] == [WEATHER]
    for proposer in [
        *_since(setup.upstream, start, "alpha"),
        *_since(setup.upstream, start, "beta"),
    ]:
        assert "tools" not in proposer
        assert "get_weather" in proposer["messages"][0]["content"]

    chunks = list(
        client.chat.completions.create(
            model="tool-moa",
            messages=_user("What is the weather in Paris?"),
            tools=[WEATHER],
            stream=True,
        )
    )
    streamed, deltas = _assembled(chunks)
    assert [(c["name"], c["arguments"]) for c in streamed] == [
        (c["name"], c["arguments"]) for c in plain
    ]
    assert streamed[0]["id"].startswith("call_gamma_") and streamed[0]["id"] != plain[0]["id"]
    # As OpenAI streams them: index, id, type and name with empty arguments, then pieces.
    assert (deltas[0].id, deltas[0].type, deltas[0].function.arguments) == (
        streamed[0]["id"],
        "function",
        "",
    )
    assert len(deltas) > 2 and all(d.id is None and d.function.name is None for d in deltas[1:])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_and_a_named_tool_choice(
    setup: Served, client: openai.OpenAI, stream: bool
) -> None:
    def calls(**options: Any) -> list[tuple[str, dict[str, Any]]]:
        answer = client.chat.completions.create(
            model="tool-moa",
            messages=_user("Use get_weather and get_time for Oslo."),
            tools=[WEATHER, TIME],
            stream=stream,
            **options,
        )
        made = _assembled(list(answer))[0] if stream else _plain_calls(answer.choices[0].message)
        return [(c["name"], json.loads(c["arguments"])) for c in made]

    setup.upstream.arguments = lambda name, request: {"city": "Oslo", "tool": name}
    oslo = {"city": "Oslo"}
    both = [
        ("get_weather", {**oslo, "tool": "get_weather"}),
        ("get_time", {**oslo, "tool": "get_time"}),
    ]
    assert calls() == both
    start = len(setup.upstream.requests)
    assert calls(parallel_tool_calls=False) == both[:1]
    assert _since(setup.upstream, start, "gamma")[0]["parallel_tool_calls"] is False
    named = {"type": "function", "function": {"name": "get_time"}}
    start = len(setup.upstream.requests)
    assert calls(tool_choice=named) == both[1:]
    assert _since(setup.upstream, start, "gamma")[0]["tool_choice"] == named


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_none_answers_in_text(
    setup: Served, client: openai.OpenAI, stream: bool
) -> None:
    start = len(setup.upstream.requests)
    answer = client.chat.completions.create(
        model="tool-moa",
        messages=_user("Just say hello."),
        tools=[WEATHER],
        tool_choice="none",
        stream=stream,
    )
    if stream:
        chunks = list(answer)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert _assembled(chunks)[0] == []
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        text = answer.choices[0].message.content
        assert answer.choices[0].message.tool_calls is None
        finish = answer.choices[0].finish_reason
    assert (text, finish) == ("gamma says: Just say hello.", "stop")
    assert _since(setup.upstream, start, "gamma")[0]["tool_choice"] == "none"


def _weather(city: str, days: int, unit: str) -> str:
    return f"{city}: sunny for {days} days, 21 degrees {unit}"


def test_a_tool_call_round_trip(setup: Served, client: openai.OpenAI) -> None:
    messages: list[Any] = _user("What is the weather in Paris?")
    first = client.chat.completions.create(model="tool-moa", messages=messages, tools=[WEATHER])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls
    messages.append(message)  # the SDK's own message object, as clients send it back
    for call in message.tool_calls:
        result = _weather(**json.loads(call.function.arguments))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})

    start = len(setup.upstream.requests)
    second = client.chat.completions.create(model="tool-moa", messages=messages, tools=[WEATHER])
    expected = "gamma says: sample city: sunny for 3 days, 21 degrees celsius"
    assert second.choices[0].message.content == expected
    assert (second.choices[0].finish_reason, second.choices[0].message.tool_calls) == ("stop", None)
    # The aggregator got the call and its result as OpenAI messages ...
    aggregator = _since(setup.upstream, start, "gamma")[0]["messages"]
    assert aggregator[-2]["tool_calls"][0]["id"] == message.tool_calls[0].id
    assert aggregator[-1] == {
        "role": "tool",
        "tool_call_id": message.tool_calls[0].id,
        "content": expected.removeprefix("gamma says: "),
    }
    # ... proposers as plain text, the result named after its tool.
    proposer = _since(setup.upstream, start, "alpha")[0]["messages"]
    assert proposer[-2]["content"].startswith("Called the tool: get_weather(")
    assert proposer[-1] == {
        "role": "user",
        "content": "Result of get_weather: " + expected.removeprefix("gamma says: "),
    }


def test_langchain_tool_round_trip_streamed(setup: Served) -> None:
    @tool
    def get_time(city: str) -> str:
        """The local time in a city."""
        return f"12:00 in {city}"

    model = ChatOpenAI(
        model="tool-moa", base_url=setup.moa.url, api_key="unused", streaming=True, max_retries=0
    ).bind_tools([get_time])
    question = HumanMessage("What time is it in Rome?")
    called = model.invoke([question])
    assert isinstance(called, AIMessage)
    assert [(c["name"], c["args"]) for c in called.tool_calls] == [
        ("get_time", {"city": "sample city"})
    ]
    result = get_time.invoke(called.tool_calls[0])
    assert isinstance(result, ToolMessage)
    answer = model.invoke([question, called, result])
    assert answer.text == "gamma says: 12:00 in sample city"
    assert not answer.tool_calls


def _valid(value: Any, schema: dict[str, Any]) -> None:
    try:
        import jsonschema
    except ImportError:  # check by hand what ANSWER_SCHEMA asks
        assert set(value) == set(schema["required"])
        assert isinstance(value["city"], str) and isinstance(value["temperature"], float)
        assert isinstance(value["sunny"], bool) and isinstance(value["tags"], list)
    else:
        jsonschema.validate(value, schema)


@pytest.mark.parametrize("stream", [False, True])
def test_response_format_json_schema(setup: Served, client: openai.OpenAI, stream: bool) -> None:
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": ANSWER_SCHEMA, "strict": True},
    }
    start = len(setup.upstream.requests)
    answer = client.chat.completions.create(
        model="tool-moa",
        messages=_user("The weather in Paris, as JSON."),
        response_format=response_format,
        stream=stream,
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    else:
        text = answer.choices[0].message.content or ""
    _valid(json.loads(text), ANSWER_SCHEMA)
    assert json.loads(text)["tags"] == ["sample tags"]
    assert _since(setup.upstream, start, "gamma")[0]["response_format"] == response_format
    assert all("response_format" not in r for r in _since(setup.upstream, start, "alpha"))


def test_response_format_json_object_and_text(setup: Served, client: openai.OpenAI) -> None:
    start = len(setup.upstream.requests)
    answer = client.chat.completions.create(
        model="tool-moa", messages=_user("Hi, in JSON"), response_format={"type": "json_object"}
    )
    assert json.loads(answer.choices[0].message.content or "") == {
        "model": "gamma",
        "answer": "gamma says: Hi, in JSON",
    }
    assert _since(setup.upstream, start, "gamma")[0]["response_format"] == {"type": "json_object"}
    start = len(setup.upstream.requests)
    answer = client.chat.completions.create(
        model="tool-moa", messages=_user("Hi"), response_format={"type": "text"}
    )
    assert answer.choices[0].message.content == "gamma says: Hi"
    assert "response_format" not in _since(setup.upstream, start, "gamma")[0]


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"tool_choice": "auto"}, None, "'tool_choice' is only allowed when 'tools' are given"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            None,
            "'tool_choice' names 'x', not one of 'tools'",
        ),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools", "tools.0"),
        ({"functions": [WEATHER["function"]]}, None, "'functions' is not supported"),
        ({"response_format": {"type": "json_schema"}}, "response_format", "json_schema"),
        (
            {
                "messages": [
                    *_user("Hi"),
                    {"role": "tool", "tool_call_id": "call_9", "content": "42"},
                ]
            },
            "messages",
            "messages.1: a tool message answers no earlier tool call (no call has the id 'call_9')",
        ),
        (
            {
                "messages": [
                    *_user("Hi"),
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "[1]"},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c", "content": "42"},
                ]
            },
            "messages",
            "messages.1.tool_calls.0.function.arguments: not a JSON object",
        ),
        (
            {"messages": [*_user("Hi"), {"role": "tool", "content": "42"}]},
            "messages",
            "messages.1.tool_call_id: Field required",
        ),
    ],
)
def test_malformed_tools_and_tool_messages_are_400s(
    setup: Served, body: dict[str, Any], param: str | None, says: str
) -> None:
    start = len(setup.upstream.requests)
    reply = httpx.post(
        f"{setup.moa.url}/chat/completions",
        json={"model": "tool-moa", "messages": _user("Hi"), **body},
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert says in error["message"]
    assert error["param"] == param
    assert len(setup.upstream.requests) == start  # refused before any model was called


class _NoTools(FakeChatModel):
    """A chat model without tool calling, as LangChain's base class has it."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


@pytest.fixture
def in_process(
    fake_model: Callable[..., FakeChatModel],
) -> Callable[[MoAConfig], httpx.AsyncClient]:
    def client(config: MoAConfig) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=create_app({"m": config}))
        return httpx.AsyncClient(transport=transport, base_url="http://localhost")

    return client


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"tools": [WEATHER]}, "tools", "agent 'plain' (plain) cannot call tools"),
        (
            {"response_format": {"type": "json_object"}},
            "response_format",
            "agent 'plain' (plain) cannot take response_format: it is not OpenAI-compatible",
        ),
    ],
)
async def test_an_aggregator_that_cannot_is_a_400_naming_it(
    in_process: Callable[[MoAConfig], httpx.AsyncClient],
    fake_model: Callable[..., FakeChatModel],
    stream: bool,
    fields: dict[str, Any],
    param: str,
    says: str,
) -> None:
    proposer = fake_model("proposer")
    config = MoAConfig(layers=[[proposer]], aggregator=_NoTools(model_name="plain"))
    body = {"model": "m", "messages": _user("Hi"), "stream": stream, **fields}
    async with in_process(config) as client:
        reply = await client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 400
        assert reply.json()["error"] == {
            "message": says,
            "type": "invalid_request_error",
            "param": param,
            "code": None,
        }
        assert proposer.calls == []  # refused before the run
        # The same MoA answers without them.
        del body[param]
        answered = await client.post("/v1/chat/completions", json={**body, "stream": False})
    assert answered.json()["choices"][0]["message"]["content"] == "plain answers: Hi"


async def test_a_fallback_that_cannot_call_tools_is_named(
    in_process: Callable[[MoAConfig], httpx.AsyncClient],
    fake_model: Callable[..., FakeChatModel],
) -> None:
    config = MoAConfig(
        layers=[[fake_model("proposer")]],
        aggregator=fake_model("able"),
        aggregator_fallbacks=[_NoTools(model_name="spare")],
    )
    body = {"model": "m", "messages": _user("Hi"), "tools": [WEATHER]}
    async with in_process(config) as client:
        reply = await client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 400
    assert "agent 'spare' (spare) cannot call tools" in reply.json()["error"]["message"]


def test_fake_upstream_keeps_plain_requests_plain() -> None:
    """Requests without tools or a format get the echo, so other tests are unchanged."""
    with serve() as upstream:
        reply = httpx.post(
            f"{upstream.url}/chat/completions",
            json={"model": "m", "messages": _user("Hi"), "tools": []},
        )
    assert reply.json()["choices"][0]["message"] == {"role": "assistant", "content": "m says: Hi"}
