"""Every graph of graphs/ end to end on fake models, and the per-run options."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import ValidationError

from graphs import (
    agent_with_moa,
    moa,
    moa_agent,
    moa_with_retrieval,
    moa_with_review,
    moa_with_tools,
)
from graphs.tools import evaluate
from moa_graph import InputError, MoAConfig, MoAContext, create_moa


@pytest.fixture
def fakes(fake_model):
    """A one-layer MoA of fakes ``a`` and ``b`` aggregated by ``agg``, and the models."""
    models = {name: fake_model(name) for name in ("a", "b", "agg")}
    config = MoAConfig(layers=[[models["a"], models["b"]]], aggregator=models["agg"], name="t")
    return config, models


def ask(text: str) -> dict:
    return {"messages": [("user", text)]}


def test_moa_runs_the_configs_own_depth_by_default(fakes) -> None:
    config, models = fakes
    graph = moa.build(config).compile()
    assert [n for n in graph.get_graph().nodes if n.startswith("layer")] == [
        "layer1/a", "layer1/b", "layer2/a", "layer2/b", "layer3/a", "layer3/b"
    ]  # fmt: skip
    out = graph.invoke(ask("Q?"))
    assert [(p.layer, p.agent) for p in out["proposals"]] == [(1, "a"), (1, "b")]
    assert out["messages"][-1].content == "agg answers: Q?"
    assert len(models["a"].calls) == 1


def test_context_layers_runs_that_many_and_aggregates_the_last(fakes) -> None:
    config, models = fakes
    out = moa.build(config).compile().invoke(ask("Q?"), context={"layers": 2})
    assert [(p.layer, p.agent) for p in out["proposals"]] == [
        (1, "a"),
        (1, "b"),
        (2, "a"),
        (2, "b"),
    ]
    assert len(models["a"].calls) == 2
    (aggregator_call,) = models["agg"].calls
    assert aggregator_call[0].content.endswith("\n1. a answers: Q?\n2. b answers: Q?")
    assert "Responses from models" in models["a"].calls[1][0].content


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"layers": 4}, "layers=4: this graph has at most 3 layers"),
        ({"preset": "wide"}, "preset 'wide' has 3 agents in layer 1, this graph 2"),
    ],
)
def test_context_errors_are_one_line(fakes, fake_model, context, message) -> None:
    config, _ = fakes
    wide = MoAConfig(
        layers=[[fake_model("x"), fake_model("y"), fake_model("z")]], aggregator=fake_model("w")
    )
    graph = create_moa(config, context_schema=MoAContext, load=lambda name: wide).compile()
    with pytest.raises(InputError, match=message):
        graph.invoke(ask("Q?"), context=context)


def test_context_is_validated(fakes) -> None:
    config, _ = fakes
    with pytest.raises(ValidationError, match="layers"):
        moa.build(config).compile().invoke(ask("Q?"), context={"layers": 0})


def test_context_preset_switches_the_models_not_the_nodes(fakes, fake_model) -> None:
    config, models = fakes
    other = {n: fake_model(n) for n in ("p", "q", "r")}
    loaded = MoAConfig(layers=[[other["p"], other["q"]]], aggregator=other["r"], name="other")
    graph = create_moa(config, context_schema=MoAContext, load=lambda name: loaded).compile()
    out = graph.invoke(ask("Q?"), context={"preset": "other"})
    assert [p.model for p in out["proposals"]] == ["p", "q"]
    assert out["messages"][-1].content == "r answers: Q?"
    assert not models["a"].calls


def test_show_proposals_streams_proposer_tokens(fakes) -> None:
    config, _ = fakes
    graph = moa.build(config).compile()

    def streamed_nodes(show: bool) -> set[str]:
        return {
            meta["langgraph_node"]
            for _, meta in graph.stream(
                ask("Q?"), context={"show_proposals": show}, stream_mode="messages"
            )
        }

    assert streamed_nodes(False) == {"aggregator"}
    assert streamed_nodes(True) == {"layer1/a", "layer1/b", "aggregator"}


def test_retrieval_puts_passages_before_the_question(fakes) -> None:
    config, models = fakes
    out = moa_with_retrieval.build(config).compile().invoke(ask("How high is Mount Everest?"))
    assert [m.type for m in out["messages"]] == ["system", "human", "ai"]
    (proposer_call,) = models["a"].calls
    assert isinstance(proposer_call[0], SystemMessage)
    assert "[units.md] Mount Everest is 8,849 metres high." in proposer_call[0].content
    assert proposer_call[-1].content == "How high is Mount Everest?"


def test_retrieval_without_a_match_adds_nothing(fakes) -> None:
    config, _ = fakes
    out = moa_with_retrieval.build(config).compile().invoke(ask("zzzz qqqq"))
    assert [m.type for m in out["messages"]] == ["human", "ai"]


def test_tools_are_called_and_shown_in_the_proposals(fakes, fake_model) -> None:
    config, _ = fakes

    def calculating(model, messages):
        if isinstance(messages[-1], ToolMessage):
            return f"The product is {messages[-1].content}."
        call = {"name": "calculator", "args": {"expression": "6 * 7"}, "id": "call-1"}
        return AIMessage("", tool_calls=[call])

    config = MoAConfig(
        layers=[[fake_model("calc", reply=calculating), fake_model("b")]],
        aggregator=fake_model("agg"),
    )
    parts = list(
        moa_with_tools.build(config)
        .compile()
        .stream(ask("What is 6*7?"), stream_mode=["custom", "values"])
    )
    tool_events = [p for mode, p in parts if mode == "custom" and p["event"] == "tool_called"]
    assert tool_events == [
        {"event": "tool_called", "tool": "calculator", "args": {"expression": "6 * 7"},
         "result": "42", "moa_model": "calc"}
    ]  # fmt: skip
    final = parts[-1][1]
    calc, plain = final["proposals"]
    assert (
        calc.content
        == 'Tool results:\n- calculator({"expression": "6 * 7"}) -> 42\n\nThe product is 42.'
    )
    assert calc.input_tokens == 20  # two model calls
    assert plain.content == "b answers: What is 6*7?"


@pytest.mark.parametrize(
    ("expression", "value"),
    [("2 + 3 * 4", 14), ("(1 + 1) ** 3", 8), ("-7 // 2", -4), ("9 / 2", 4.5)],
)
def test_calculator_computes(expression, value) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize("expression", ["__import__('os')", "2 ** 100000", "1 / 0", "x + 1", "1 +"])
def test_calculator_refuses(expression) -> None:
    with pytest.raises(ValueError):
        evaluate(expression)


@pytest.fixture
def reviewed(fakes):
    config, models = fakes
    graph = moa_with_review.build(config).compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "review"}}
    paused = graph.invoke(ask("Q?"), thread)
    (pending,) = paused["__interrupt__"]
    assert pending.value["answer"] == "agg answers: Q?"
    return graph, thread, models


def test_review_approve(reviewed) -> None:
    graph, thread, models = reviewed
    out = graph.invoke(Command(resume={"action": "approve"}), thread)
    assert "__interrupt__" not in out
    assert [m.content for m in out["messages"]] == ["Q?", "agg answers: Q?"]
    assert len(models["agg"].calls) == 1


def test_review_edit(reviewed) -> None:
    graph, thread, _ = reviewed
    out = graph.invoke(Command(resume={"action": "edit", "answer": "Edited."}), thread)
    assert [m.content for m in out["messages"]] == ["Q?", "Edited."]
    assert graph.get_state(thread).next == ()


def test_review_send_back_runs_once_more_then_reviews_again(reviewed) -> None:
    graph, thread, models = reviewed
    out = graph.invoke(Command(resume={"action": "revise", "comment": "cite a source"}), thread)
    (pending,) = out["__interrupt__"]
    comment = "A reviewer sent the answer back: cite a source"
    assert pending.value["answer"] == f"agg answers: {comment}"
    second_call = models["a"].calls[1]
    assert [m.content for m in second_call] == ["Q?", "agg answers: Q?", comment]
    out = graph.invoke(Command(resume={"action": "approve"}), thread)
    assert out["messages"][-1].content == f"agg answers: {comment}"
    assert {p.turn for p in out["proposals"]} == {2}


@pytest.mark.parametrize(
    ("resume", "message"),
    [
        ({"action": "reject"}, "invalid review: action"),
        ({"action": "edit"}, "an 'edit' review needs a non-empty 'answer'"),
        ({"action": "revise", "comment": " "}, "a 'revise' review needs a non-empty 'comment'"),
    ],
)
def test_review_rejects_bad_resume_values(reviewed, resume, message) -> None:
    graph, thread, _ = reviewed
    with pytest.raises(InputError, match=message):
        graph.invoke(Command(resume=resume), thread)


def test_agent_answers_easy_questions_with_one_model(fakes) -> None:
    config, models = fakes
    out = agent_with_moa.build(config).compile().invoke(ask("Capital of France?"))
    assert out["messages"][-1].content == "agg answers: Capital of France?"
    assert not models["a"].calls
    assert set(out) == {"messages"}


def test_agent_streams_the_moa_steps_under_its_namespace(fakes) -> None:
    config, models = fakes
    graph = agent_with_moa.build(config).compile()
    steps = [
        (namespace, node)
        for namespace, update in graph.stream(
            ask("Explain why the sky is blue."), subgraphs=True, stream_mode="updates"
        )
        for node in update
    ]
    inner = [(ns, node) for ns, node in steps if ns]
    assert {ns[0].split(":")[0] for ns, _ in inner} == {"moa"}
    # Parallel nodes of one layer finish in any order; the aggregator comes after them.
    named = [node for _, node in inner if node.startswith("layer1") or node == "aggregator"]
    assert sorted(named[:2]) == ["layer1/a", "layer1/b"]
    assert named[2:] == ["aggregator"]
    assert steps[-1] == ((), "moa")
    assert len(models["a"].calls) == 1


@pytest.mark.parametrize(
    ("question", "hard"),
    [("Capital of France?", False), ("Why is the sky blue?", True), ("word " * 30, True)],
)
def test_router(question, hard) -> None:
    assert agent_with_moa.is_hard(question) is hard


def test_retrieval_input_errors_are_one_line(fakes) -> None:
    config, _ = fakes
    graph = moa_with_retrieval.build(config).compile()
    with pytest.raises(InputError, match="the conversation is empty"):
        graph.invoke({"messages": []})
    with pytest.raises(InputError, match="the last message must be from the user"):
        graph.invoke({"messages": [HumanMessage("Q?"), AIMessage("A.")]})


def test_moa_agent_runs_the_tool_its_mixture_chose_and_answers_from_it(fake_model) -> None:
    from langchain_core.messages import AIMessage, ToolMessage

    def decide(model, messages):
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if results:
            return f"It is {results[-1].text}."
        call = {"name": "calculator", "args": {"expression": "17 * 23"}, "id": "c1"}
        return AIMessage("", tool_calls=[call])

    proposers = [fake_model("a"), fake_model("b")]
    aggregator = fake_model("agg", reply=decide)
    config = MoAConfig(layers=[proposers], aggregator=aggregator, name="t")
    out = moa_agent.build(config).invoke(ask("What is 17 times 23?"))
    tool_results = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert [m.text for m in tool_results] == ["391"]  # the calculator really ran
    assert out["messages"][-1].text == "It is 391."
    assert len(aggregator.calls) == 2 and all(len(p.calls) == 2 for p in proposers)
