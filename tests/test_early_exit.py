"""Early exit on agreement, staged proposers and layers that stop the stack when they
no longer change the answer: call counts, paths in events and state, resumed runs,
the drawn graph, config errors, the display and `moa serve`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from rich.console import Console

from moa_graph import ConfigError, MoAConfig, MoAContext, create_moa
from moa_graph.cli.app import _as_json
from moa_graph.cli.display import ProgressTable, how_answered
from moa_graph.config.model import EarlyExit, config_from_data
from moa_graph.graph.build import AGGREGATOR_NODE, EXIT_NODE
from moa_graph.run.checkpoints import open_checkpointer, thread_config
from moa_graph.run.streaming import Finished, Progress, Token, stream_moa
from moa_graph.server.app import create_app
from tests.event_loop import longest_stall
from tests.fake_chat import FakeChatModel

Replies = dict[str, str]


def says(text: str) -> Callable[[FakeChatModel, list[BaseMessage]], str]:
    """Reply ``text``; in a later layer (references in a system message), revised."""
    return lambda model, messages: text + (" (revised)" if messages[0].type == "system" else "")


@pytest.fixture
def staged(fake_model):
    """Build a MoA of fakes with fixed replies: ``staged({"a": "...", ...}, layers=2)``."""

    def make(
        replies: Replies, *, layers: int = 1, check_code: bool = False, **early_exit: Any
    ) -> tuple[MoAConfig, dict]:
        models = {name: fake_model(name, reply=says(text)) for name, text in replies.items()}
        models["agg"] = fake_model("agg")
        config = MoAConfig(
            layers=[[m for n, m in models.items() if n != "agg"]] * layers,
            aggregator=models["agg"],
            early_exit={"stages": [2], **early_exit},
            check_code=check_code,
            name="ee",
        )
        return config, models

    return make


def calls(models: dict) -> dict[str, int]:
    return {name: len(model.calls) for name, model in models.items()}


def ask(config: MoAConfig, text: str = "Q?", **kwargs: Any) -> dict[str, Any]:
    return create_moa(config).compile().invoke({"messages": [HumanMessage(text)]}, **kwargs)


AGREE = {"a": "The answer is 42", "b": "So the answer is 42.", "c": "The answer is 41"}
DISAGREE = {"a": "The answer is 42", "b": "The answer is 41", "c": "The answer is 40"}


def test_an_agreeing_first_stage_ends_the_run_without_the_rest(staged) -> None:
    config, models = staged(AGREE, layers=2)
    out = ask(config)
    # c (stage 2), layer 2 and the aggregator never ran
    assert calls(models) == {"a": 1, "b": 1, "c": 0, "agg": 0}
    answer = out["messages"][-1]
    assert answer.content == "The answer is 42"
    assert answer.response_metadata == {
        "moa_strategy": "early_exit",
        "moa_chosen": 0,
        "moa_agent": "a",
        "moa_exit_layer": 1,
        "moa_exit_stage": 1,
        "moa_exit_reason": "2 of 2 proposals state the answer 42",
    }
    assert out["exit"] == {
        "turn": 1,
        "layer": 1,
        "stage": 1,
        "action": "answer",
        "chosen": 0,
        "reason": "2 of 2 proposals state the answer 42",
    }
    assert out["usage"] == {"input_tokens": 20, "output_tokens": 10, "total_tokens": 30}
    assert [(p.layer, p.agent) for p in out["proposals"]] == [(1, "a"), (1, "b")]
    assert json.loads(_as_json(config, out))["exit"] == out["exit"]  # moa ask --json


def test_a_disagreeing_stage_runs_the_next_stage_then_every_layer_and_the_aggregator(
    staged,
) -> None:
    config, models = staged(DISAGREE, layers=2)
    out = ask(config)
    assert calls(models) == {"a": 2, "b": 2, "c": 2, "agg": 1}
    assert out["messages"][-1].content == "agg answers: Q?"
    assert out["exit"] is None
    assert out["usage"]["total_tokens"] == 7 * 15


def test_a_later_stage_ends_the_run_when_a_quorum_agrees(staged) -> None:
    replies = {"a": "The answer is 42", "b": "The answer is 41", "c": "The answer is 42"}
    config, models = staged(replies, layers=2, quorum=0.6)
    out = ask(config)
    assert calls(models) == {"a": 1, "b": 1, "c": 1, "agg": 0}
    assert out["exit"]["stage"] == 2
    assert out["exit"]["reason"] == "2 of 3 proposals state the answer 42"
    # Without the quorum, 2 of 3 is not enough: layer 2 and the aggregator run.
    config, models = staged(replies, layers=2)
    assert ask(config)["exit"] is None and calls(models)["agg"] == 1


def test_texts_agree_by_similarity(staged) -> None:
    text = "Paris is the capital of France and its largest city."
    replies = {"a": text, "b": text.replace("largest", "biggest"), "c": "Lyon."}
    config, models = staged(replies, agree="similar", min_similarity=0.6)
    out = ask(config)
    assert calls(models) == {"a": 1, "b": 1, "c": 0, "agg": 0}
    assert out["exit"]["reason"] == "2 of 2 proposals are at least 0.6 alike"
    config, models = staged(replies, agree="similar", min_similarity=0.95)
    assert ask(config)["exit"] is None and calls(models)["agg"] == 1
    # auto: text that states no answer is compared by similarity too
    config, models = staged(replies, agree="auto", min_similarity=0.6)
    assert ask(config)["exit"]["action"] == "answer"


CODE_PROMPT = '''Complete the function.
```python
def total(xs):
    """Sum a list.
    >>> total([1, 2])
    3
    >>> total([])
    0
    """
```'''
SUMS = "```python\ndef total(xs):\n    return sum(xs)\n```"
LOOPS = (
    "Here:\n```python\ndef total(xs):\n    n = 0\n    for x in xs:\n        n += x\n"
    "    return n\n```"
)
COUNTS = "```python\ndef total(xs):\n    return len(xs)\n```"


@pytest.mark.parametrize("agree", ["answer", "auto"])
def test_code_agrees_when_it_passes_the_prompts_examples_with_check_code(staged, agree) -> None:
    config, models = staged({"a": SUMS, "b": LOOPS, "c": COUNTS}, check_code=True, agree=agree)
    out = ask(config, CODE_PROMPT)
    assert calls(models) == {"a": 1, "b": 1, "c": 0, "agg": 0}
    assert out["exit"]["reason"] == "2 of 2 proposals pass all 2 of the prompt's examples"
    assert out["messages"][-1].content == SUMS  # the two tie on agreement: the first wins


SLOW_SUMS = (
    "```python\ndef total(xs):\n    import time\n    time.sleep(0.8)\n    return sum(xs)\n```"
)


async def test_an_async_run_checks_code_off_the_event_loop(staged) -> None:
    # each proposal sleeps 0.8 s per example, 1.6 s in all: a check on the loop stalls it
    config, _ = staged({"a": SLOW_SUMS, "b": SLOW_SUMS, "c": COUNTS}, check_code=True)
    graph = create_moa(config).compile()
    out, stall = await longest_stall(graph.ainvoke({"messages": [HumanMessage(CODE_PROMPT)]}))
    assert out["exit"]["reason"] == "2 of 2 proposals pass all 2 of the prompt's examples"
    assert stall < 1.0


def test_code_that_fails_an_example_does_not_agree(staged) -> None:
    # COUNTS passes total([]) == 0 only: the third proposal and the aggregator run
    config, models = staged({"a": SUMS, "b": COUNTS, "c": LOOPS}, check_code=True, agree="answer")
    out = ask(config, CODE_PROMPT)
    assert calls(models) == {"a": 1, "b": 1, "c": 1, "agg": 1}
    assert out["exit"] is None


def test_code_is_not_run_without_check_code(staged) -> None:
    config, models = staged({"a": SUMS, "b": SUMS, "c": COUNTS}, agree="answer")
    assert ask(config, CODE_PROMPT)["exit"] is None and calls(models)["agg"] == 1
    # a prompt without examples leaves code to the usual notion (here: no stated answer)
    config, models = staged({"a": SUMS, "b": SUMS, "c": COUNTS}, check_code=True, agree="answer")
    assert ask(config, "Write total(xs).")["exit"] is None and calls(models)["agg"] == 1


def test_the_path_shows_in_the_stream_events(staged) -> None:
    def path(config: MoAConfig) -> list[tuple[str, Any]]:
        graph = create_moa(config).compile()
        events = graph.stream({"messages": [HumanMessage("Q?")]}, stream_mode="custom")
        return [(e["event"], e.get("moa_agent", e.get("moa_reason"))) for e in events]

    # A stage's agents start in parallel (threads, in a sync run), in no fixed order.
    config, _ = staged(AGREE, layers=2)
    started = [e for e in path(config) if e[0] in ("agent_started", "early_exit")]
    assert sorted(started[:2]) == [("agent_started", "a"), ("agent_started", "b")]
    assert started[2:] == [("early_exit", "2 of 2 proposals state the answer 42")]
    config, _ = staged(DISAGREE, layers=2)
    events = path(config)
    assert "early_exit" not in [e[0] for e in events]
    agents = [agent for event, agent in events if event == "agent_started"]
    stages = [sorted(agents[0:2]), agents[2], sorted(agents[3:5]), agents[5]]
    assert len(agents) == 6 and stages == [["a", "b"], "c", ["a", "b"], "c"]
    assert events[-2:][0] == ("aggregator_started", "agg")


def test_an_unchanged_layer_stops_the_stack_and_the_aggregator_runs_on_it(staged) -> None:
    # The layers disagree within (42 vs 41) but keep the same majority answer, 42.
    replies = {
        "a": "The answer is 42",
        "b": "The answer is 41",
        "c": "I think 42: The answer is 42",
    }
    config, models = staged(replies, layers=3, quorum=1.0, stop_unchanged=True)
    graph = create_moa(config).compile()
    question = {"messages": [HumanMessage("Q?")]}
    parts = list(graph.stream(question, stream_mode=["custom", "values"]))
    events = [payload for mode, payload in parts if mode == "custom"]
    out = parts[-1][1]
    assert calls(models) == {"a": 2, "b": 2, "c": 2, "agg": 1}  # layer 3 skipped
    assert out["exit"] == {
        "turn": 1,
        "layer": 2,
        "stage": 2,
        "action": "aggregate",
        "chosen": None,
        "reason": "layer 2 keeps the answer 42 of layer 1",
    }
    assert out["messages"][-1].content == "agg answers: Q?"
    # The aggregator read layer 2's proposals, as the last layer of the run.
    revised = [f"\n{i}. {text} (revised)" for i, text in enumerate(replies.values(), 1)]
    assert models["agg"].calls[-1][0].content.endswith("".join(revised))
    assert [p.layer for p in out["proposals"]] == [1, 1, 1, 2, 2, 2]
    stops = [e for e in events if e["event"] == "early_exit"]
    assert [(e["moa_layer"], e["moa_action"]) for e in stops] == [(2, "aggregate")]
    finished = [e for e in events if e["event"] == "agent_finished"]
    assert finished[-1]["moa_role"] == "aggregator" and finished[-1]["moa_layer"] == 3
    table = ProgressTable(config)
    for event in events:
        table.update(event)
    assert [row["status"] for row in table._rows.values()] == ["done"] * 6 + ["skipped"] * 3 + [
        "done"
    ]
    assert table.exit == (
        "layer 2, stage 2: layer 2 keeps the answer 42 of layer 1; later layers skipped"
    )
    # Without stop_unchanged, all three layers run.
    config, models = staged(replies, layers=3)
    assert ask(config)["exit"] is None and calls(models)["a"] == 3


def test_a_run_one_layer_deep_goes_from_its_check_to_the_aggregator(staged) -> None:
    config, models = staged(DISAGREE)
    graph = create_moa(config, context_schema=MoAContext, max_layers=3).compile()
    out = graph.invoke({"messages": [HumanMessage("Q?")]}, context={"layers": 1})
    assert calls(models) == {"a": 1, "b": 1, "c": 1, "agg": 1}
    assert out["exit"] is None


def test_each_turn_decides_for_itself(fake_model) -> None:
    def reply(name: str) -> Callable[[FakeChatModel, list[BaseMessage]], str]:
        def answer(model: FakeChatModel, messages: list[BaseMessage]) -> str:
            easy = messages[-1].text == "easy"
            return "The answer is 1" if easy or name == "a" else f"The answer is {name}"

        return answer

    proposers = [fake_model(n, reply=reply(n)) for n in ("a", "b", "c")]
    agg = fake_model("agg")
    config = MoAConfig(layers=[proposers], aggregator=agg, early_exit={"agree": "answer"})
    graph = create_moa(config).compile(checkpointer=InMemorySaver())
    thread = thread_config("turns")
    first = graph.invoke({"messages": [HumanMessage("easy")]}, thread)
    assert first["exit"]["turn"] == 1 and first["messages"][-1].content == "The answer is 1"
    second = graph.invoke({"messages": [HumanMessage("hard")]}, thread)
    assert second["exit"] is None
    assert second["messages"][-1].content == "agg answers: hard"
    assert len(agg.calls) == 1
    assert [m.type for m in second["messages"]] == ["human", "ai", "human", "ai"]


async def test_a_run_stopped_after_the_decision_resumes_without_repeating_calls(
    staged, tmp_path: Path
) -> None:
    config, models = staged(AGREE, layers=2)
    thread = thread_config("stopped")
    async with open_checkpointer(tmp_path / "runs.sqlite") as saver:
        # As a run killed right after the check's decision reached the checkpointer.
        stopped = create_moa(config).compile(
            checkpointer=saver, interrupt_after=["check/layer1/stage1"]
        )
        await stopped.ainvoke({"messages": [HumanMessage("Q?")]}, thread, durability="sync")
        state = await stopped.aget_state(thread)
        assert state.next == (EXIT_NODE,)
        assert state.values["exit"]["action"] == "answer"
        before = calls(models)
    async with open_checkpointer(tmp_path / "runs.sqlite") as saver:
        out = await create_moa(config).compile(checkpointer=saver).ainvoke(None, thread)
    assert calls(models) == before == {"a": 1, "b": 1, "c": 0, "agg": 0}
    assert out["messages"][-1].content == "The answer is 42"
    assert out["usage"]["total_tokens"] == 30


async def test_a_run_killed_in_its_second_stage_resumes_on_its_path(staged, tmp_path: Path) -> None:
    config, models = staged(DISAGREE)
    models["c"].delay = 30.0
    thread = thread_config("killed")
    async with open_checkpointer(tmp_path / "runs.sqlite") as saver:
        graph = create_moa(config).compile(checkpointer=saver)
        seen: list[str] = []

        async def run() -> None:
            async for event in graph.astream(
                {"messages": [HumanMessage("Q?")]}, thread, stream_mode="custom", durability="sync"
            ):
                seen.append(event.get("moa_agent", ""))

        task = asyncio.create_task(run())
        while "c" not in seen:
            await asyncio.sleep(0.01)
        task.cancel()  # the kill: c is still waiting for its reply
        with pytest.raises(asyncio.CancelledError):
            await task
    models["c"].delay = 0.0
    async with open_checkpointer(tmp_path / "runs.sqlite") as saver:
        out = await create_moa(config).compile(checkpointer=saver).ainvoke(None, thread)
    assert calls(models) == {"a": 1, "b": 1, "c": 2, "agg": 1}
    assert out["messages"][-1].content == "agg answers: Q?"


def test_the_drawn_graph_has_the_checks_and_their_conditional_edges(staged) -> None:
    config, _ = staged(AGREE, layers=2)
    graph = create_moa(config).compile().get_graph()
    edges = {(e.source, e.target): e.conditional for e in graph.edges}
    checks = [
        "check/layer1/stage1",
        "check/layer1/stage2",
        "check/layer2/stage1",
        "check/layer2/stage2",
    ]
    assert set(checks) | {EXIT_NODE} <= set(graph.nodes)
    conditional = {edge for edge, is_conditional in edges.items() if is_conditional}
    assert conditional == {
        ("__start__", "layer1/a"),
        ("__start__", "layer1/b"),
        ("check/layer1/stage1", "layer1/c"),
        ("check/layer1/stage1", EXIT_NODE),
        ("check/layer1/stage2", "layer2/a"),
        ("check/layer1/stage2", "layer2/b"),
        ("check/layer1/stage2", AGGREGATOR_NODE),
        ("check/layer1/stage2", EXIT_NODE),
        ("check/layer2/stage1", "layer2/c"),
        ("check/layer2/stage1", EXIT_NODE),
        ("check/layer2/stage2", AGGREGATOR_NODE),
        ("check/layer2/stage2", EXIT_NODE),
    }
    assert edges[("layer1/a", "check/layer1/stage1")] is False
    assert edges[(EXIT_NODE, "__end__")] is False
    assert graph.nodes["check/layer2/stage1"].metadata == {"role": "check", "layer": 2, "stage": 1}
    # Without early_exit, the graph has no checks.
    plain = create_moa(config.model_copy(update={"early_exit": None})).compile().get_graph()
    assert not [n for n in plain.nodes if n.startswith("check/") or n == EXIT_NODE]
    unstaged = create_moa(config.model_copy(update={"early_exit": EarlyExit()}))
    unstaged_graph = unstaged.compile().get_graph()
    assert {"check/layer1", "check/layer2"} <= set(unstaged_graph.nodes)


@pytest.mark.parametrize(
    ("early_exit", "expected"),
    [
        (
            {"stages": [3]},
            "early_exit.stages: [3] take 3 agents but layer 1 has 3; leave at least one",
        ),
        ({"stages": [1]}, "early_exit.stages: [1]: the first stage needs two agents or more"),
        ({"stages": [2, 0]}, "early_exit.stages: [2, 0]: every stage needs at least one agent"),
        ({"quorum": 0.5}, "early_exit.quorum: Input should be greater than 0.5"),
        (
            {"min_similarity": 1.5},
            "early_exit.min_similarity: Input should be less than or equal to 1",
        ),
        ({"agree": "vote"}, "early_exit.agree: Input should be 'answer', 'similar' or 'auto'"),
        ({"stage": [2]}, "early_exit.stage: unknown field (did you mean 'stages'?)"),
    ],
)
def test_invalid_early_exit_settings_are_one_line_errors(early_exit, expected) -> None:
    data = {"layers": [["openai:a", "openai:b", "openai:c"]], "aggregator": "openai:a"}
    with pytest.raises(ConfigError) as error:
        config_from_data({**data, "early_exit": early_exit})
    assert str(error.value).startswith(f"invalid config: {expected}")
    assert "\n" not in str(error.value)


def test_early_exit_is_off_by_default_and_true_takes_the_defaults() -> None:
    data = {"layers": [["openai:a", "openai:b"]], "aggregator": "openai:a"}
    assert config_from_data(data).early_exit is None
    on = config_from_data({**data, "early_exit": True}).early_exit
    assert on is not None and (on.agree, on.quorum, on.stages, on.stop_unchanged) == (
        "auto",
        1.0,
        [],
        False,
    )
    assert config_from_data({**data, "early_exit": False}).early_exit is None


async def test_the_display_shows_the_exit_and_the_skipped_agents(staged) -> None:
    config, _ = staged(AGREE, layers=2)
    graph = create_moa(config, stream_proposers=False).compile()
    table = ProgressTable(config)
    final: dict[str, Any] = {}
    tokens = []
    async for event in stream_moa(graph, {"messages": [HumanMessage("Q?")]}):
        if isinstance(event, Progress):
            table.update(event.data)
        elif isinstance(event, Token):
            tokens.append(event.text)
        elif isinstance(event, Finished):
            final = event.state
    assert tokens == []  # no model wrote the answer: it is shown from the final state
    assert final["messages"][-1].content == "The answer is 42"
    assert final["usage"]["total_tokens"] == 30
    table.finish(final)
    console = Console(record=True, width=200)
    console.print(table)
    shown = console.export_text()
    assert "layer 1, stage 1: 2 of 2 proposals state the answer 42; the rest skipped" in shown
    statuses = [line.split()[3] for line in shown.splitlines()[1:8]]
    assert statuses == ["done", "done", "skipped", "skipped", "skipped", "skipped", "skipped"]
    assert how_answered(final["messages"][-1]) == (
        "the answer is proposal 1 of layer 1, on which the proposals agreed (2 of 2 "
        "proposals state the answer 42); later layers and the aggregator were skipped"
    )


async def test_moa_serve_answers_with_the_agreed_proposal_and_its_usage(staged) -> None:
    config, models = staged(AGREE)
    app = create_app({"ee": config})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        body = {
            "model": "ee",
            "messages": [{"role": "user", "content": "Q?"}],
            "moa": {"include_proposals": True},
        }
        reply = (await client.post("/v1/chat/completions", json=body)).json()
        streamed = await client.post(
            "/v1/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
        )
    assert reply["choices"][0]["message"]["content"] == "The answer is 42"
    assert reply["usage"]["total_tokens"] == 30
    assert reply["moa"]["exit"]["reason"] == "2 of 2 proposals state the answer 42"
    assert reply["moa"]["aggregator"] is None
    chunks = [
        json.loads(line.removeprefix("data: "))
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
    ]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "The answer is 42"
    assert chunks[-1]["usage"]["total_tokens"] == 30
    assert calls(models) == {"a": 2, "b": 2, "c": 0, "agg": 0}
