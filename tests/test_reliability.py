"""Retries, timeouts, failed proposers, deadlines, fallbacks, rate limits and context
budgets, each against real HTTP faults from ``tests.fault_server``."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from moa_graph import InputError, MoAConfig, create_moa
from moa_graph.errors import ContextOverflowError, LayerError, ModelCallError
from moa_graph.graph.build import check_input
from moa_graph.run.streaming import Finished, stream_moa
from tests.fault_server import (
    BAD_REQUEST,
    DROPPED,
    EMPTY,
    MALFORMED,
    SERVER_ERROR,
    UNAUTHORIZED,
    fault_server,
    hang,
    rate_limited,
)


def moa(
    server: Any,
    proposers: tuple[str, ...] = ("p1", "p2", "p3"),
    aggregator: str | dict[str, Any] = "agg",
    **options: Any,
) -> MoAConfig:
    """A one-layer MoA whose agents are models of the fault server, with fast retries."""

    def agent(model: str | dict[str, Any]) -> dict[str, Any]:
        fields = model if isinstance(model, dict) else {"model": model}
        name = fields["model"]
        return {**fields, "model": f"openai:{name}", "name": name, "base_url": server.url}

    layers = options.pop("layers", None) or [[agent(m) for m in proposers]]
    fallbacks = [agent(m) for m in options.pop("aggregator_fallbacks", [])]
    return MoAConfig(
        layers=layers,
        aggregator=agent(aggregator),
        aggregator_fallbacks=fallbacks,
        **{"backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0, **options},
    )


def ask(config: MoAConfig, prompt: str = "Q?") -> dict[str, Any]:
    return create_moa(config).compile().invoke({"messages": [HumanMessage(prompt)]})


async def aask(config: MoAConfig, prompt: str = "Q?") -> dict[str, Any]:
    return await create_moa(config).compile().ainvoke({"messages": [HumanMessage(prompt)]})


def aggregator_request(server: Any) -> str:
    (request,) = [r for r in server.requests if r["model"] == "agg"]
    return str(request["messages"][0]["content"])


async def test_transient_faults_are_retried_until_answered() -> None:
    plan = {
        "p1": {1: SERVER_ERROR, 2: SERVER_ERROR},
        "p2": {1: DROPPED},
        "p3": {1: MALFORMED},
        "agg": {1: EMPTY},
    }
    with fault_server(plan) as server:
        out = await aask(moa(server))
    assert out["messages"][-1].content == "agg says: Q?"
    assert all(p.ok for p in out["proposals"])
    assert dict(server.calls) == {"p1": 3, "p2": 2, "p3": 2, "agg": 2}


def test_sync_runs_retry_too() -> None:
    with fault_server({"p1": {1: SERVER_ERROR}, "agg": {1: DROPPED}}) as server:
        out = ask(moa(server, proposers=("p1",)))
    assert out["messages"][-1].content == "agg says: Q?"
    assert dict(server.calls) == {"p1": 2, "agg": 2}


async def test_retry_after_is_honoured() -> None:
    with fault_server({"p1": {1: rate_limited("1")}}) as server:
        started = time.perf_counter()
        out = await aask(moa(server, proposers=("p1",)))
        elapsed = time.perf_counter() - started
    assert out["proposals"][0].ok
    assert server.calls["p1"] == 2
    assert elapsed >= 1.0  # the backoff alone is at most 0.05 s


async def test_a_retry_after_longer_than_allowed_fails_at_once() -> None:
    with fault_server({"p1": {1: rate_limited("120")}}) as server:
        out = await aask(moa(server, proposers=("p1", "p2"), max_retry_after_s=5))
    failed = out["proposals"][0]
    assert server.calls["p1"] == 1
    assert failed.error is not None and "HTTP 429" in failed.error


async def test_auth_errors_and_invalid_requests_are_not_retried() -> None:
    with fault_server({"p1": {1: UNAUTHORIZED}, "p2": {1: BAD_REQUEST}}) as server:
        out = await aask(moa(server))
    p1, p2, p3 = out["proposals"]
    assert server.calls["p1"] == server.calls["p2"] == 1
    assert p1.error is not None and "HTTP 401" in p1.error
    assert p2.error is not None and "HTTP 400" in p2.error
    assert p3.ok and out["messages"][-1].content == "agg says: Q?"


async def test_retries_are_limited_per_agent() -> None:
    always = {n: SERVER_ERROR for n in range(1, 10)}
    with fault_server({"p1": always, "p2": always}) as server:
        config = moa(
            server,
            layers=None,
            proposers=("p1", "p2", "p3"),
            max_retries=1,
        )
        layer = [config.layers[0][0].model_copy(update={"max_retries": 4}), *config.layers[0][1:]]
        out = await aask(config.model_copy(update={"layers": [layer]}))
    assert server.calls["p1"] == 5
    assert server.calls["p2"] == 2
    assert [p.ok for p in out["proposals"]] == [False, False, True]


async def test_a_failed_proposer_never_cancels_its_siblings() -> None:
    with fault_server({"p1": {1: UNAUTHORIZED}, "p2": {1: hang(0.5)}}) as server:
        out = await aask(moa(server))
    p1, p2, p3 = out["proposals"]
    assert not p1.ok and p1.content == ""
    assert p2.content == "p2 says: Q?" and p3.ok
    assert dict(server.calls) == {"p1": 1, "p2": 1, "p3": 1, "agg": 1}
    # The aggregator sees the two answers only, numbered from 1.
    assert aggregator_request(server).endswith("\n1. p2 says: Q?\n2. p3 says: Q?")


async def test_an_attempt_past_its_timeout_is_retried_then_recorded() -> None:
    hangs = {1: hang(3), 2: hang(3)}
    with fault_server({"p1": hangs}) as server:
        started = time.perf_counter()
        out = await aask(moa(server, timeout_s=0.3, max_retries=1))
        elapsed = time.perf_counter() - started
    p1 = out["proposals"][0]
    assert server.calls["p1"] == 2
    assert p1.error is not None and "no reply within 0.3s" in p1.error
    assert elapsed < 2.5


async def test_too_few_answers_stop_the_run_naming_every_failed_agent() -> None:
    with fault_server({"p1": {1: UNAUTHORIZED}, "p2": {1: BAD_REQUEST}}) as server:
        with pytest.raises(LayerError) as raised:
            await aask(moa(server, min_proposals=2))
        assert server.calls["agg"] == 0
    message = str(raised.value)
    assert "layer 1: 1 of 3 agents answered, 2 needed" in message
    assert "p1: HTTP 401" in message and "p2: HTTP 400" in message


def test_min_proposals_above_a_layer_size_is_a_config_error() -> None:
    with fault_server({}) as server, pytest.raises(ValueError, match="min_proposals is 4"):
        moa(server, min_proposals=4)


async def test_a_layer_deadline_goes_on_without_the_slow_agent() -> None:
    with fault_server({"p3": {1: hang(5)}}) as server:
        started = time.perf_counter()
        out = await aask(moa(server, layer_deadline_s=0.5, timeout_s=30))
        elapsed = time.perf_counter() - started
    assert elapsed < 3
    p1, p2, p3 = out["proposals"]
    assert p1.ok and p2.ok
    assert p3.error == "layer deadline of 0.5s passed"
    assert out["messages"][-1].content == "agg says: Q?"


async def test_the_aggregator_falls_back_in_order() -> None:
    plan = {"agg": {1: UNAUTHORIZED}, "agg2": {1: BAD_REQUEST}}
    with fault_server(plan) as server:
        out = await aask(moa(server, aggregator_fallbacks=["agg2", "agg3"]))
    assert out["messages"][-1].content == "agg3 says: Q?"
    assert (server.calls["agg"], server.calls["agg2"], server.calls["agg3"]) == (1, 1, 1)


async def test_an_aggregator_failing_with_all_fallbacks_is_a_clear_error() -> None:
    plan = {"agg": {1: UNAUTHORIZED}, "agg2": {1: UNAUTHORIZED}}
    with (
        fault_server(plan) as server,
        pytest.raises(ModelCallError, match="aggregator 'agg' failed") as raised,
    ):
        await aask(moa(server, aggregator_fallbacks=["agg2"]))
    assert "openai:agg: HTTP 401" in str(raised.value)
    assert "openai:agg2: HTTP 401" in str(raised.value)


async def test_a_provider_rate_limit_is_shared_by_its_agents() -> None:
    times: list[float] = []

    def record(model: str, number: int) -> None:
        times.append(time.monotonic())

    with fault_server(record) as server:
        await aask(moa(server, rate_limits={"openai": 5}))
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.15  # 5 requests per second: one every 0.2 s


async def test_references_are_cut_to_the_context_window_and_the_cut_recorded() -> None:
    with fault_server({}) as server:
        server.reply = lambda request: f"{request['model']} " + "word " * 600
        layers = [
            [{"model": "openai:p1", "name": "p1", "base_url": server.url}],
            [
                {
                    "model": "openai:p2",
                    "name": "p2",
                    "base_url": server.url,
                    "context_window": 400,
                    "max_tokens": 100,
                }
            ],
        ]
        out = await aask(moa(server, layers=layers))
    p1, p2 = out["proposals"]
    assert p1.references_cut_tokens == 0
    assert p2.references_cut_tokens > 400
    (request,) = [r for r in server.requests if r["model"] == "p2"]
    sent = sum(len(m["content"]) for m in request["messages"])
    assert 0.8 * 300 * 4 < sent <= 300 * 4  # the 300 prompt tokens, at ~4 chars each


async def test_a_prompt_known_to_overflow_is_never_sent() -> None:
    with fault_server({}) as server:
        config = moa(server, aggregator={"model": "agg", "context_window": 200})
        with pytest.raises(ContextOverflowError, match="does not fit agent 'agg'"):
            await aask(config, "word " * 1000)
        with pytest.raises(ContextOverflowError):
            check_input(config, [HumanMessage("word " * 1000)])
    assert sum(server.calls.values()) == 0


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "the conversation is empty"),
        ([HumanMessage("Q?"), AIMessage("A.")], "must be from the user"),
        ([HumanMessage("  ")], "the prompt is empty"),
        (
            [
                HumanMessage(
                    [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image", "url": "http://127.0.0.1/x.png"},
                    ]
                )
            ],
            "has image content, which agent 'p1'",
        ),
    ],
)
async def test_bad_input_is_a_clear_error_before_any_call(messages: list[Any], error: str) -> None:
    with fault_server({}) as server:
        config = moa(server)
        with pytest.raises(InputError, match=error):
            check_input(config, messages)
        with pytest.raises(InputError, match=error):
            await create_moa(config).compile().ainvoke({"messages": messages})
    assert sum(server.calls.values()) == 0


async def test_streamed_runs_report_failed_agents() -> None:
    with fault_server({"p1": {1: UNAUTHORIZED}, "p2": {1: SERVER_ERROR}}) as server:
        graph = create_moa(moa(server)).compile()
        events = [e async for e in stream_moa(graph, {"messages": [HumanMessage("Q?")]})]
    failed = [e.data for e in events if getattr(e, "data", {}).get("event") == "agent_failed"]
    assert [f["moa_agent"] for f in failed] == ["p1"]
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.state["messages"][-1].content == "agg says: Q?"
    assert server.calls["p2"] == 2
