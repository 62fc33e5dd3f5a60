"""Votes on proposed tool calls: the call most proposals make is the answer, no aggregator.

Proposers (fake models) write calls as JSON text, as the local models do; the mixture
votes on them for ``vote``, ``consensus`` and ``auto``, leaves them to the aggregator for
``synthesize``, ends early when the first stage agrees on a call, and ``moa serve``
returns the voted call in OpenAI's format, streamed and not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from moa_graph import MoAConfig
from moa_graph.config.model import EarlyExit
from moa_graph.run.chat_model import ChatMoA
from moa_graph.server.app import create_app
from tests.fake_chat import FakeChatModel

Make = Callable[..., FakeChatModel]


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


@tool
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def says(text: str) -> Callable[[FakeChatModel, list[BaseMessage]], str]:
    return lambda model, messages: text


def proposers(fake_model: Make, *texts: str) -> list[FakeChatModel]:
    return [fake_model(f"p{i}", reply=says(text)) for i, text in enumerate(texts)]


def call(name: str, **args: Any) -> str:
    return json.dumps({"name": name, "arguments": args})


def aggregator(fake_model: Make) -> FakeChatModel:
    return fake_model("agg", reply=says("the aggregator's own answer"))


@pytest.mark.parametrize("aggregation", ["vote", "consensus", "auto"])
def test_two_equal_calls_of_three_are_the_answer_without_the_aggregator(
    fake_model: Make, aggregation: str
) -> None:
    texts = (
        call("multiply", a=17, b=23),
        call("add", a=17, b=23),
        f"```json\n{call('multiply', b=23.0, a=17)}\n```",  # order and 23.0: still equal
    )
    agg = aggregator(fake_model)
    config = MoAConfig(
        layers=[proposers(fake_model, *texts)], aggregator=agg, aggregation=aggregation
    )
    answer = ChatMoA(config).bind_tools([multiply, add]).invoke("What is 17 times 23?")
    assert isinstance(answer, AIMessage)
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("multiply", {"a": 17, "b": 23})]
    assert answer.text == ""
    assert answer.response_metadata["moa_votes"] == 2
    assert answer.response_metadata["moa_chosen"] == 0
    assert agg.calls == []


def test_parallel_calls_vote_as_multisets_and_a_tie_goes_to_the_first(fake_model: Make) -> None:
    both = call("multiply", a=1, b=2) + "\n" + call("add", a=3, b=4)
    swapped = call("add", a=3, b=4) + "\n" + call("multiply", a=1, b=2)
    agg = aggregator(fake_model)
    voted = MoAConfig(
        layers=[proposers(fake_model, call("add", a=1, b=1), both, swapped)],
        aggregator=agg,
        aggregation="vote",
    )
    answer = ChatMoA(voted).bind_tools([multiply, add]).invoke("Do both.")
    assert [c["name"] for c in answer.tool_calls] == ["multiply", "add"]
    assert answer.response_metadata["moa_chosen"] == 1

    tied = MoAConfig(
        layers=[proposers(fake_model, call("add", a=5, b=6), call("add", a=1, b=2))],
        aggregator=agg,
        aggregation="vote",
    )
    first = ChatMoA(tied).bind_tools([multiply, add]).invoke("Add.")
    assert [c["args"] for c in first.tool_calls] == [{"a": 5, "b": 6}]
    assert agg.calls == []


def test_synthesize_and_text_proposals_leave_the_answer_to_the_aggregator(
    fake_model: Make,
) -> None:
    agreeing = [call("multiply", a=17, b=23)] * 3
    agg = aggregator(fake_model)
    synthesized = MoAConfig(
        layers=[proposers(fake_model, *agreeing)], aggregator=agg, aggregation="synthesize"
    )
    answer = ChatMoA(synthesized).bind_tools([multiply]).invoke("17 * 23?")
    assert answer.text == "the aggregator's own answer"
    assert len(agg.calls) == 1

    texts = (call("multiply", a=17, b=23), "It is 391.", "391")
    mostly_text = MoAConfig(
        layers=[proposers(fake_model, *texts)], aggregator=agg, aggregation="vote"
    )
    assert ChatMoA(mostly_text).bind_tools([multiply]).invoke("17 * 23?").tool_calls == []
    assert len(agg.calls) == 2

    made_up = (call("divide", a=1, b=2),) * 3  # not a bound tool: text
    invented = MoAConfig(
        layers=[proposers(fake_model, *made_up)], aggregator=agg, aggregation="vote"
    )
    assert ChatMoA(invented).bind_tools([multiply]).invoke("1 / 2?").tool_calls == []
    assert len(agg.calls) == 3


def test_tool_choice_none_and_a_named_tool_restrict_the_vote(fake_model: Make) -> None:
    agg = aggregator(fake_model)
    config = MoAConfig(
        layers=[proposers(fake_model, *[call("multiply", a=2, b=3)] * 3)],
        aggregator=agg,
        aggregation="vote",
    )
    moa = ChatMoA(config)
    assert moa.bind_tools([multiply, add], tool_choice="none").invoke("2 * 3?").tool_calls == []
    assert len(agg.calls) == 1
    assert moa.bind_tools([multiply, add], tool_choice="add").invoke("2 * 3?").tool_calls == []
    assert len(agg.calls) == 2
    answer = moa.bind_tools([multiply, add], tool_choice="multiply").invoke("2 * 3?")
    assert [c["name"] for c in answer.tool_calls] == ["multiply"]
    assert len(agg.calls) == 2


def test_agreeing_calls_end_the_run_early(fake_model: Make) -> None:
    texts = (call("multiply", a=17, b=23), call("multiply", b=23, a=17.0), call("add", a=1, b=1))
    layer = proposers(fake_model, *texts)
    agg = aggregator(fake_model)
    config = MoAConfig(layers=[layer], aggregator=agg, early_exit=EarlyExit(stages=[2]))
    answer = ChatMoA(config).bind_tools([multiply, add]).invoke("What is 17 times 23?")
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("multiply", {"a": 17, "b": 23})]
    assert answer.response_metadata["moa_strategy"] == "early_exit"
    assert "make equal calls of multiply" in answer.response_metadata["moa_exit_reason"]
    assert layer[2].calls == [] and agg.calls == []  # the third proposer never ran

    disagreeing = proposers(fake_model, texts[0], texts[2], texts[1])
    config = MoAConfig(layers=[disagreeing], aggregator=agg, early_exit=EarlyExit(stages=[2]))
    ChatMoA(config).bind_tools([multiply, add]).invoke("What is 17 times 23?")
    assert len(disagreeing[2].calls) == 1  # the first stage disagreed: the layer went on


@pytest.mark.parametrize("stream", [False, True])
async def test_moa_serve_returns_the_voted_call_in_the_openai_format(
    fake_model: Make, stream: bool
) -> None:
    texts = (call("multiply", a=17, b=23), call("multiply", a=17.0, b=23), "391")
    agg = aggregator(fake_model)
    config = MoAConfig(layers=[proposers(fake_model, *texts)], aggregator=agg, aggregation="auto")
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "What is 17 times 23?"}],
        "tools": [convert_to_openai_tool(multiply)],
        "stream": stream,
    }
    transport = httpx.ASGITransport(app=create_app({"m": config}))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        reply = await client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200
    if stream:
        events = [
            json.loads(line.removeprefix("data: "))
            for line in reply.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
        deltas = [e["choices"][0]["delta"] for e in events if e.get("choices")]
        assert "".join(d.get("content") or "" for d in deltas) == ""
        pieces = [c for d in deltas for c in d.get("tool_calls") or []]
        name = "".join(p["function"].get("name") or "" for p in pieces)
        arguments = "".join(p["function"].get("arguments") or "" for p in pieces)
        finish = [e["choices"][0]["finish_reason"] for e in events if e.get("choices")][-1]
    else:
        choice = reply.json()["choices"][0]
        assert choice["message"]["content"] in (None, "")
        (only,) = choice["message"]["tool_calls"]
        assert only["type"] == "function" and only["id"]
        name, arguments = only["function"]["name"], only["function"]["arguments"]
        finish = choice["finish_reason"]
    assert (name, json.loads(arguments), finish) == ("multiply", {"a": 17, "b": 23}, "tool_calls")
    assert agg.calls == []


def test_an_aggregator_repeating_the_call_just_answered_gives_way_to_the_proposals(
    fake_model: Make,
) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage

    made = {"name": "multiply", "args": {"a": 17, "b": 23}, "id": "c1"}

    def again(model: FakeChatModel, messages: list[BaseMessage]) -> AIMessage:
        return AIMessage("", tool_calls=[{**made, "id": "c2", "args": {"b": 23, "a": 17.0}}])

    agg = fake_model("agg", reply=again)
    texts = ("It is 391.", "17 times 23 is 391.", "Ask again?")
    config = MoAConfig(layers=[proposers(fake_model, *texts)], aggregator=agg)
    moa = ChatMoA(config).bind_tools([multiply])
    done = [
        HumanMessage("What is 17 times 23?"),
        AIMessage("", tool_calls=[made]),
        ToolMessage("391", tool_call_id="c1"),
    ]
    answer = moa.invoke(done)
    assert answer.tool_calls == [] and "391" in answer.text
    assert answer.response_metadata["moa_repeated_call"] is True
    required = ChatMoA(config).bind_tools([multiply], tool_choice="required").invoke(done)
    assert len(required.tool_calls) == 1  # a call it must make stands
    first = moa.invoke(done[:1])  # a first call is the aggregator's to make
    assert [c["args"] for c in first.tool_calls] == [{"b": 23, "a": 17.0}]
