from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver

from moa_graph import AGGREGATE_PROMPT, AGGREGATOR_TAG, InputError, MoAConfig, create_moa
from moa_graph.graph.build import AGGREGATOR_NODE, proposer_node
from moa_graph.run.streaming import Finished, Progress, Token, stream_moa
from tests.fake_chat import FakeChatModel


@pytest.fixture
def two_layers(fake_model):
    """A 2-layer MoA (3 then 2 proposers) of distinct fake models, and the models."""
    models = {name: fake_model(name) for name in ("a", "b", "c", "d", "e", "agg")}
    config = MoAConfig(
        layers=[[models["a"], models["b"], models["c"]], [models["d"], models["e"]]],
        aggregator=models["agg"],
        name="test",
    )
    return config, models


def test_nodes_and_edges_of_two_layers(two_layers) -> None:
    config, _ = two_layers
    graph = create_moa(config).compile().get_graph()
    layer1 = ["layer1/a", "layer1/b", "layer1/c"]
    layer2 = ["layer2/d", "layer2/e"]
    assert set(graph.nodes) == {"__start__", "__end__", *layer1, *layer2, AGGREGATOR_NODE}
    edges = {(e.source, e.target) for e in graph.edges}
    expected = (
        {("__start__", n) for n in layer1}
        | {(s, t) for s in layer1 for t in layer2}
        | {(s, AGGREGATOR_NODE) for s in layer2}
        | {(AGGREGATOR_NODE, "__end__")}
    )
    assert edges == expected
    assert graph.nodes["layer2/e"].metadata == {
        "role": "proposer",
        "layer": 2,
        "agent": "e",
        "model": "e",
        "preset": "test",
    }
    assert graph.nodes[AGGREGATOR_NODE].metadata["role"] == "aggregator"


def test_every_layer_sees_every_previous_response(two_layers) -> None:
    config, models = two_layers
    out = create_moa(config).compile().invoke({"messages": [("user", "Q?")]})

    for name in ("a", "b", "c"):
        (received,) = models[name].calls
        assert [m.type for m in received] == ["human"]
    expected_layer1 = "".join(f"\n{i}. {n} answers: Q?" for i, n in enumerate("abc", 1))
    for name in ("d", "e"):
        (received,) = models[name].calls
        assert isinstance(received[0], SystemMessage)
        assert received[0].content == AGGREGATE_PROMPT + expected_layer1
        assert received[1].content == "Q?"
    (received,) = models["agg"].calls
    assert received[0].content == AGGREGATE_PROMPT + "\n1. d answers: Q?\n2. e answers: Q?"
    assert out["messages"][-1].content == "agg answers: Q?"


def test_references_are_appended_to_an_existing_system_message(fake_model) -> None:
    model = fake_model("m")
    config = MoAConfig(
        layers=[[{"model": model, "system_prompt": "Agent rules."}]], aggregator=model
    )
    create_moa(config).compile().invoke(
        {"messages": [SystemMessage("Be terse."), HumanMessage("Q?")]}
    )
    proposer_call, aggregator_call = model.calls
    assert proposer_call[0].content == "Agent rules.\n\nBe terse."
    assert aggregator_call[0].content == f"Be terse.\n\n{AGGREGATE_PROMPT}\n1. m answers: Q?"
    assert len(aggregator_call) == 2


def test_proposals_are_ordered_by_layer_and_agent_whatever_finishes_first(fake_model) -> None:
    rng = random.Random(7)
    names = [f"m{i}" for i in range(6)]
    layers = [[fake_model(n, delay=rng.uniform(0, 0.05)) for n in names] for _ in range(2)]
    config = MoAConfig(layers=layers, aggregator=fake_model("agg"))
    graph = create_moa(config).compile()
    for _ in range(3):
        out = asyncio.run(graph.ainvoke({"messages": [("user", "go")]}))
        assert [(p.layer, p.index, p.agent) for p in out["proposals"]] == [
            (layer, i, n) for layer in (1, 2) for i, n in enumerate(names)
        ]
    # The aggregator's references follow the same order, not completion order.
    references = config.aggregator.model.calls[-1][0].content.split("\n")[-6:]
    assert [r.split(" ")[1] for r in references] == names


class _Gated(FakeChatModel):
    """A fake whose async calls wait at a barrier that opens only once every party waits."""

    barrier: Any = None

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.wait_for(self.barrier.wait(), timeout=30)
        return await super()._agenerate(*args, **kwargs)

    async def _astream(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.wait_for(self.barrier.wait(), timeout=30)
        async for chunk in super()._astream(*args, **kwargs):
            yield chunk


def test_layers_run_in_parallel() -> None:
    # The barrier opens only when all four proposers are in their calls at once: run one
    # after another, the first would wait alone and time out. (No clock to race on.)
    barrier = asyncio.Barrier(4)
    proposers = [_Gated(model_name=f"m{i}", barrier=barrier) for i in range(4)]
    config = MoAConfig(layers=[proposers], aggregator=FakeChatModel(model_name="agg"))
    result = asyncio.run(create_moa(config).compile().ainvoke({"messages": [("user", "go")]}))

    assert [len(p.calls) for p in proposers] == [1, 1, 1, 1]
    assert result["messages"][-1].content.startswith("agg answers:")


def test_multi_turn_sees_whole_conversation_and_references_of_latest_turn_only(fake_model) -> None:
    proposer, aggregator = fake_model("p"), fake_model("agg")
    graph = create_moa(MoAConfig(layers=[[proposer]], aggregator=aggregator)).compile(
        checkpointer=InMemorySaver()
    )
    thread = {"configurable": {"thread_id": "t1"}}
    first = graph.invoke({"messages": [("user", "first")]}, thread)
    second = graph.invoke({"messages": [("user", "second")]}, thread)

    assert [m.content for m in second["messages"]] == [
        "first",
        "agg answers: first",
        "second",
        "agg answers: second",
    ]
    last_proposer_call = proposer.calls[-1]
    assert [m.content for m in last_proposer_call] == ["first", "agg answers: first", "second"]
    last_aggregator_call = aggregator.calls[-1]
    assert last_aggregator_call[0].content.endswith("\n1. p answers: second")
    assert "p answers: first" not in last_aggregator_call[0].content
    assert [p.turn for p in first["proposals"]] == [1]
    assert [(p.turn, p.content) for p in second["proposals"]] == [(2, "p answers: second")]


def test_usage_is_the_sum_of_every_call(fake_model) -> None:
    config = MoAConfig(
        layers=[
            [
                fake_model("a", input_tokens=3, output_tokens=4),
                fake_model("b", input_tokens=5, output_tokens=6),
            ],
            [fake_model("c", input_tokens=7, output_tokens=8)],
        ],
        aggregator=fake_model("agg", input_tokens=100, output_tokens=20),
    )
    out = create_moa(config).compile().invoke({"messages": [("user", "go")]})
    assert out["usage"] == {"input_tokens": 115, "output_tokens": 38, "total_tokens": 153}
    assert [(p.input_tokens, p.output_tokens) for p in out["proposals"]] == [(3, 4), (5, 6), (7, 8)]
    assert out["messages"][-1].usage_metadata["output_tokens"] == 20


def test_streaming_tags_let_callers_keep_only_the_answer(two_layers) -> None:
    config, _ = two_layers
    graph = create_moa(config).compile()

    async def collect():
        return [
            event
            async for event in graph.astream(
                {"messages": [("user", "Q?")]}, stream_mode=["messages", "custom"]
            )
        ]

    events = asyncio.run(collect())
    tokens = [(chunk, meta) for mode, (chunk, meta) in (e for e in events if e[0] == "messages")]
    answer = "".join(c.content for c, m in tokens if AGGREGATOR_TAG in m["tags"])
    assert answer == "agg answers: Q?"
    assert {m["langgraph_node"] for c, m in tokens if AGGREGATOR_TAG in m["tags"]} == {
        AGGREGATOR_NODE
    }
    assert {m["moa_role"] for c, m in tokens} == {"proposer", "aggregator"}

    progress = [data for mode, data in events if mode == "custom"]
    kinds = [(e["event"], e.get("moa_layer"), e.get("moa_agent")) for e in progress]
    assert kinds.index(("layer_started", 1, None)) < kinds.index(("agent_finished", 1, "a"))
    assert kinds.index(("agent_finished", 1, "c")) < kinds.index(("layer_started", 2, None))
    assert kinds.index(("agent_finished", 2, "e")) < kinds.index(("aggregator_started", 3, "agg"))
    assert kinds[-1] == ("agent_finished", 3, "agg")
    finished = [e for e in progress if e["event"] == "agent_finished"]
    assert len(finished) == 6
    assert all(
        e["latency_s"] >= 0 and e["input_tokens"] == 10 and e["output_tokens"] == 5
        for e in finished
    )
    assert {e["moa_preset"] for e in progress if "moa_preset" in e} == {"test"}


@pytest.mark.parametrize("use_async", [True, False])
def test_answer_only_streaming_keeps_proposers_tokens_from_the_caller(
    two_layers, use_async
) -> None:
    config, models = two_layers
    graph = create_moa(config, stream_proposers=False).compile()
    modes = ["messages", "values"]
    question = {"messages": [("user", "Q?")]}

    async def collect():
        return [e async for e in graph.astream(question, stream_mode=modes)]

    events = (
        asyncio.run(collect()) if use_async else list(graph.stream(question, stream_mode=modes))
    )
    chunks = [payload for mode, payload in events if mode == "messages"]
    assert {meta["moa_role"] for _, meta in chunks} == {"aggregator"}
    assert "".join(c.content for c, _ in chunks) == "agg answers: Q?"
    # Every call streams, so that its timeouts can watch its progress; the proposers'
    # tokens only never reach the caller.
    assert [models[n].streamed_calls for n in [*"abcde", "agg"]] == [1] * 6
    assert len(events[-1][1]["proposals"]) == 5


def test_with_one_overall_limit_only_calls_a_caller_streams_stream(two_layers) -> None:
    config, models = two_layers
    limit = {"timeout_s": 30.0, "first_token_timeout_s": 30.0, "idle_timeout_s": 30.0}
    config = config.model_copy(update={"calls": config.calls.model_copy(update=limit)})
    graph = create_moa(config, stream_proposers=False).compile()
    question = {"messages": [("user", "Q?")]}

    async def stream():
        return [e async for e in graph.astream(question, stream_mode=["messages", "values"])]

    events = asyncio.run(stream())
    assert events[-1][1]["messages"][-1].content == "agg answers: Q?"
    # No limit needs their tokens and no caller sees them: the proposers come back whole.
    assert [models[n].streamed_calls for n in [*"abcde", "agg"]] == [0, 0, 0, 0, 0, 1]

    asyncio.run(graph.ainvoke(question))
    assert [models[n].streamed_calls for n in [*"abcde", "agg"]] == [0, 0, 0, 0, 0, 1]
    assert [len(models[n].calls) for n in [*"abcde", "agg"]] == [2] * 6


def test_stream_moa_yields_progress_tokens_then_the_result(two_layers) -> None:
    config, _ = two_layers
    graph = create_moa(config).compile()

    async def collect():
        return [e async for e in stream_moa(graph, {"messages": [("user", "Q?")]})]

    events = asyncio.run(collect())
    assert isinstance(events[-1], Finished)
    assert "".join(e.text for e in events if isinstance(e, Token)) == "agg answers: Q?"
    # 2 layer_started, 5 agent_started, 6 agent_finished, 1 aggregator_started
    assert sum(isinstance(e, Progress) for e in events) == 2 + 5 + 6 + 1
    assert len(events[-1].state["proposals"]) == 5


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], "the conversation is empty"),
        ([HumanMessage("   ")], "the prompt is empty"),
        (
            [HumanMessage("hi"), AIMessage("hello")],
            "the last message must be from the user, not a ai message",
        ),
        ([SystemMessage("rules")], "not a system message"),
    ],
)
def test_bad_conversations_fail_before_any_model_call(two_layers, messages, expected) -> None:
    config, models = two_layers
    graph = create_moa(config).compile()
    with pytest.raises(InputError, match=expected):
        graph.invoke({"messages": messages})
    assert all(not model.calls for model in models.values())


def test_node_names_show_layer_and_agent(fake_model) -> None:
    config = MoAConfig(
        layers=[[fake_model("x"), fake_model("x")], [{"model": fake_model("y"), "name": "critic"}]],
        aggregator=fake_model("z"),
    )
    assert set(create_moa(config).nodes) == {
        proposer_node(1, "x"),
        proposer_node(1, "x-2"),
        proposer_node(2, "critic"),
        AGGREGATOR_NODE,
    }


def test_embeds_as_a_subgraph_of_a_messages_app(fake_model) -> None:
    from langgraph.graph import START, MessagesState, StateGraph

    moa = create_moa(MoAConfig(layers=[[fake_model("p")]], aggregator=fake_model("agg"))).compile()
    parent = StateGraph(MessagesState)
    parent.add_node("moa", moa)
    parent.add_edge(START, "moa")
    out = parent.compile().invoke({"messages": [("user", "hi")]})
    assert [m.content for m in out["messages"]] == ["hi", "agg answers: hi"]
