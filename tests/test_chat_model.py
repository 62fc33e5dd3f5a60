"""ChatMoA: a MoA used as a LangChain chat model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk
from pydantic import BaseModel

from moa_graph import MoAConfig
from moa_graph.run.chat_model import ChatMoA
from tests.fake_chat import FakeChatModel

Make = Callable[..., FakeChatModel]


def mixture(fake_model: Make, **config: Any) -> tuple[ChatMoA, list[FakeChatModel]]:
    a, b, agg = fake_model("a"), fake_model("b"), fake_model("agg")
    moa = ChatMoA(MoAConfig(layers=[[a, b]], aggregator=agg, **config))
    return moa, [a, b, agg]


def test_invoke_answers_with_every_calls_usage_and_the_proposals(fake_model: Make) -> None:
    moa, (a, b, agg) = mixture(fake_model)
    answer = moa.invoke("Why is the sky blue?")
    assert isinstance(answer, AIMessage)
    assert answer.text == "agg answers: Why is the sky blue?"
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["total_tokens"] == 3 * 15  # three calls of 10 + 5 tokens
    proposals = answer.response_metadata["moa_proposals"]
    assert [p["content"] for p in proposals] == [
        "a answers: Why is the sky blue?",
        "b answers: Why is the sky blue?",
    ]
    assert len(a.calls) == len(b.calls) == len(agg.calls) == 1


async def test_ainvoke_and_batch_run_one_mixture_per_input(fake_model: Make) -> None:
    moa, (_, _, agg) = mixture(fake_model)
    assert (await moa.ainvoke("One?")).text == "agg answers: One?"
    answers = moa.batch(["Two?", "Three?"])
    assert [a.text for a in answers] == ["agg answers: Two?", "agg answers: Three?"]
    assert len(agg.calls) == 3


def test_stream_yields_the_aggregators_tokens_then_usage(fake_model: Make) -> None:
    moa, _ = mixture(fake_model)
    chunks = list(moa.stream("Hello there"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len([c for c in chunks if c.text]) == 4  # "agg ", "answers: ", "Hello ", "there"
    whole = sum(chunks[1:], chunks[0])
    assert whole.text == "agg answers: Hello there"
    assert whole.usage_metadata is not None and whole.usage_metadata["total_tokens"] == 45
    assert len(whole.response_metadata["moa_proposals"]) == 2


async def test_astream_of_a_selection_gives_the_chosen_proposal(fake_model: Make) -> None:
    moa, (_, _, agg) = mixture(fake_model, aggregation="vote")
    chunks = [chunk async for chunk in moa.astream("2+2?")]
    whole = sum(chunks[1:], chunks[0])
    assert whole.text == "a answers: 2+2?"  # no aggregator call: the vote's pick
    assert agg.calls == []
    assert whole.response_metadata["moa_strategy"] == "vote"


def test_callbacks_see_the_mixtures_calls_under_the_chat_models_run(fake_model: Make) -> None:
    moa, _ = mixture(fake_model)
    parents: dict[UUID, UUID | None] = {}
    names: dict[UUID, str] = {}

    class Runs(BaseCallbackHandler):
        def on_chat_model_start(
            self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any
        ) -> None:
            parents[run_id] = kwargs.get("parent_run_id")
            names[run_id] = (kwargs.get("metadata") or {}).get("moa_agent", "ChatMoA")

        def on_chain_start(
            self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any
        ) -> None:
            parents[run_id] = kwargs.get("parent_run_id")

    moa.invoke("Hi", config={"callbacks": [Runs()]})
    (root,) = [run for run, parent in parents.items() if parent is None]
    assert names[root] == "ChatMoA"
    inner = [run for run in names if run != root]
    assert sorted(names[run] for run in inner) == ["a", "agg", "b"]

    def ancestors(run: UUID) -> set[UUID]:
        seen = set()
        while (parent := parents.get(run)) is not None:
            seen.add(parent)
            run = parent
        return seen

    assert all(root in ancestors(run) for run in inner)  # traced under the chat model's run


def test_a_bad_preset_is_a_clear_error() -> None:
    from moa_graph import ConfigError

    with pytest.raises(ConfigError, match="no-such-preset"):
        ChatMoA("no-such-preset")


def test_an_agent_calls_the_tool_the_mixture_chose_then_answers_from_its_result(
    fake_model: Make,
) -> None:
    from langchain.agents import create_agent
    from langchain_core.messages import BaseMessage, ToolMessage
    from langchain_core.tools import tool

    ran: list[str] = []

    @tool
    def weather(city: str) -> str:
        """Return today's weather in a city."""
        ran.append(city)
        return f"sunny and 21 C in {city}"

    def decide(model: FakeChatModel, messages: list[BaseMessage]) -> str | AIMessage:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if results:
            return f"Today: {results[-1].text}."
        call = {"name": "weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}
        return AIMessage("", tool_calls=[call])

    proposer = fake_model("p")
    aggregator = fake_model("agg", reply=decide)
    moa = ChatMoA(MoAConfig(layers=[[proposer]], aggregator=aggregator))
    agent = create_agent(moa, tools=[weather])
    result = agent.invoke({"messages": [("user", "What is the weather in Paris?")]})

    assert ran == ["Paris"]  # the tool really ran, once
    assert result["messages"][-1].text == "Today: sunny and 21 C in Paris."
    assert len(aggregator.calls) == 2
    # Proposers saw the tool described, and its call and result as plain text.
    first, second = proposer.calls
    assert "weather: Return today's weather in a city." in first[0].text
    assert not any(isinstance(m, ToolMessage) for m in second)
    assert second[-1].text == "Result of weather: sunny and 21 C in Paris"
    # The aggregator saw the conversation as it is, tool messages included.
    assert isinstance(aggregator.calls[1][-1], ToolMessage)


class Person(BaseModel):
    name: str
    age: int


def calls_person(**args: Any) -> Callable[..., AIMessage]:
    def answer(model: FakeChatModel, messages: list[Any]) -> AIMessage:
        call = {"name": "Person", "args": args, "id": "c1", "type": "tool_call"}
        return AIMessage("", tool_calls=[call])  # type: ignore[list-item]

    return answer


def test_structured_output_is_a_validated_instance(fake_model: Make) -> None:
    def answer(model: FakeChatModel, messages: list[Any]) -> AIMessage:
        call = {
            "name": "Person",
            "args": {"name": "Ada", "age": 36},
            "id": "c1",
            "type": "tool_call",
        }
        return AIMessage("", tool_calls=[call])

    moa = ChatMoA(MoAConfig(layers=[[fake_model("p")]], aggregator=fake_model("agg", reply=answer)))
    assert moa.with_structured_output(Person).invoke("Who wrote the first program?") == Person(
        name="Ada", age=36
    )


async def test_structured_output_that_never_validates_is_one_clear_error(fake_model: Make) -> None:
    from moa_graph.errors import StructuredOutputError

    def answer(model: FakeChatModel, messages: list[Any]) -> AIMessage:
        call = {
            "name": "Person",
            "args": {"name": "Ada", "age": "old"},
            "id": "c1",
            "type": "tool_call",
        }
        return AIMessage("", tool_calls=[call])

    aggregator = fake_model("agg", reply=answer)
    moa = ChatMoA(MoAConfig(layers=[[fake_model("p")]], aggregator=aggregator))
    with pytest.raises(StructuredOutputError, match=r"did not validate as Person after 2 attempts"):
        await moa.with_structured_output(Person).ainvoke("Who?")
    assert len(aggregator.calls) == 2  # one retry, then the error


def test_a_mixture_with_early_exit_leaves_tool_answers_to_the_aggregator(fake_model: Make) -> None:
    from moa_graph.config.model import EarlyExit

    aggregator = fake_model("agg", reply=calls_person(name="Ada", age=36))
    same = [fake_model("p", reply=lambda m, msgs: "Ada, 36") for _ in range(3)]
    config = MoAConfig(layers=[same], aggregator=aggregator, early_exit=EarlyExit(stages=[2]))
    moa = ChatMoA(config)
    assert moa.invoke("Who?").text == "Ada, 36"  # the proposals agree: no aggregator
    assert aggregator.calls == []
    assert moa.with_structured_output(Person).invoke("Who?") == Person(name="Ada", age=36)
    assert len(aggregator.calls) == 1
