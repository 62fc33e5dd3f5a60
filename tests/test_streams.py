"""Streams and repeated runs against a server that behaves like a real one: keep-alive
connections, answers in many chunks, failures part way through a stream."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.messages import HumanMessage

from moa_graph import create_moa
from moa_graph.errors import ModelCallError
from moa_graph.graph.build import AGGREGATOR_TAG
from tests.fault_server import (
    UNAUTHORIZED,
    dropped_after,
    fault_server,
    malformed_after,
    slow,
    stalled_after,
)
from tests.test_reliability import moa

LONG_ANSWER = " ".join(f"word{i}" for i in range(15))


def _long(request: dict[str, Any]) -> str:
    return LONG_ANSWER


async def _stream_answer(graph: Any) -> tuple[str, dict[str, Any] | None, Exception | None]:
    """Stream a run as a chat UI does: the aggregator's tokens, then the final state."""
    shown, final, error = "", None, None
    question = {"messages": [HumanMessage("Q?")]}
    try:
        async for mode, payload in graph.astream(question, stream_mode=["messages", "values"]):
            if mode == "messages" and AGGREGATOR_TAG in payload[1].get("tags", []):
                shown += payload[0].content
            elif mode == "values":
                final = payload
    except ModelCallError as failure:
        error = failure
    return shown, final, error


def test_a_compiled_graph_runs_under_asyncio_run_again_and_again() -> None:
    # Keep-alive connections of a finished event loop must never be reused.
    with fault_server({}) as server:
        graph = create_moa(moa(server)).compile()
        for turn in range(3):
            question = {"messages": [HumanMessage(f"turn {turn}")]}
            out = asyncio.run(graph.ainvoke(question))
            assert [p.error for p in out["proposals"]] == [None] * 3
            assert out["messages"][-1].text == f"agg says: turn {turn}"
        assert server.calls["agg"] == 3


@pytest.mark.parametrize("fault", [dropped_after(3), malformed_after(3)])
def test_a_broken_answer_stream_is_never_spliced(fault) -> None:
    with fault_server({"agg": {1: fault}}, reply=_long) as server:
        graph = create_moa(moa(server)).compile()
        shown, _, error = asyncio.run(_stream_answer(graph))
    # Tokens were shown, so the aggregator is not retried: a clean error, no second attempt.
    assert server.calls["agg"] == 1
    assert error is not None and "not retried, as they were already shown" in str(error)
    assert LONG_ANSWER.startswith(shown) and shown.count("word0") <= 1


@pytest.mark.parametrize("fault", [dropped_after(3), malformed_after(3)])
def test_a_broken_stream_nobody_watched_is_retried(fault) -> None:
    with fault_server({"agg": {1: fault}}, reply=_long) as server:
        out = asyncio.run(create_moa(moa(server)).compile().ainvoke({"messages": [("user", "Q")]}))
    assert server.calls["agg"] == 2
    assert out["messages"][-1].text == LONG_ANSWER


def test_a_stream_that_stalls_after_its_first_token_times_out_and_is_retried_once() -> None:
    with fault_server({"p1": {1: stalled_after(2, 30)}}, reply=_long) as server:
        config = moa(server, idle_timeout_s=1.0)
        started = time.monotonic()
        out = asyncio.run(create_moa(config).compile().ainvoke({"messages": [("user", "Q")]}))
        elapsed = time.monotonic() - started
    assert server.calls["p1"] == 2
    assert out["proposals"][0].error is None and out["proposals"][0].content == LONG_ANSWER
    assert elapsed < 10


def test_a_slow_but_live_stream_is_never_cut() -> None:
    # A token every 2 s for 30 s under a 10 s idle limit (and a 5 s overall limit that
    # a live stream does not reach: timeout_s bounds a whole attempt only from 30 s).
    with fault_server({"p1": {1: slow(2.0)}}, reply=_long) as server:
        config = moa(server, idle_timeout_s=10.0, timeout_s=60.0)
        out = asyncio.run(create_moa(config).compile().ainvoke({"messages": [("user", "Q")]}))
    assert server.calls["p1"] == 1
    assert out["proposals"][0].content == LONG_ANSWER


def test_sync_runs_honour_the_layer_deadline_and_the_attempt_timeout() -> None:
    plan = {"p1": {1: slow(0.4), 2: slow(0.4)}, "p2": {1: slow(0.4), 2: slow(0.4)}}
    with fault_server(plan, reply=_long) as server:
        config = moa(server, layer_deadline_s=1.5, max_retries=0)
        started = time.monotonic()
        out = create_moa(config).compile().invoke({"messages": [("user", "Q")]})
        assert time.monotonic() - started < 5  # 16 events at 0.4 s would take 6.4 s
        assert "layer deadline" in (out["proposals"][0].error or "")
        assert out["proposals"][2].error is None
        config = moa(server, timeout_s=1.0, max_retries=0, proposers=("p2", "p3"))
        out = create_moa(config).compile().invoke({"messages": [("user", "Q")]})
        assert "no reply within 1s" in (out["proposals"][0].error or "")


SENTINEL = "sk-sentinel-echoed-0123456789"


def _echoing_config(tmp_path: Path, url: str, aggregator: str = "agg") -> Path:
    def agent(name: str) -> dict[str, Any]:
        return {
            "model": f"openai:{name}",
            "name": name,
            "base_url": url,
            "api_key_env": "MOA_TEST_UPSTREAM_KEY",
        }

    path = tmp_path / "echo.yaml"
    data = {
        "name": "echo",
        "layers": [[agent("p1"), agent("p2")]],
        "aggregator": agent(aggregator),
        "max_retries": 0,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_api_key_echoed_by_the_upstream_is_redacted_everywhere(tmp_path, monkeypatch) -> None:
    from tests.test_cli import moa as run_moa

    monkeypatch.setenv("MOA_TEST_UPSTREAM_KEY", SENTINEL)
    unauthorized = {n: UNAUTHORIZED for n in range(1, 9)}
    with fault_server({"p1": unauthorized, "agg": unauthorized}) as server:
        server.fault_message = f"Incorrect API key provided: {SENTINEL}"  # as OpenAI's 401
        config = _echoing_config(tmp_path, server.url)
        store = tmp_path / "runs.sqlite"
        env = {"MOA_TEST_UPSTREAM_KEY": SENTINEL}
        args = ["ask", "Q?", "--config", str(config), "--show-proposals", "--json"]
        done = run_moa(*args, "--thread", "t1", "--checkpoints", str(store), env=env)
        assert server.fault.injected  # the upstream did answer 401 with the key in it
    assert done.returncode == 1
    assert "401" in done.stderr and "[redacted]" in done.stderr
    assert SENTINEL not in done.stdout + done.stderr
    assert store.exists() and SENTINEL.encode() not in store.read_bytes()
    # The proposal that failed was saved with its redacted reason.
    assert b"[redacted]" in store.read_bytes()


def test_moa_serve_never_returns_or_logs_an_echoed_key(tmp_path, monkeypatch) -> None:
    import openai

    from tests.server_process import moa_serve

    monkeypatch.setenv("MOA_TEST_UPSTREAM_KEY", SENTINEL)
    unauthorized = {n: UNAUTHORIZED for n in range(1, 9)}
    with fault_server({"p1": unauthorized, "p2": unauthorized}) as server:
        server.fault_message = f"Incorrect API key provided: {SENTINEL}"
        config = _echoing_config(tmp_path, server.url)
        log = tmp_path / "serve.log"
        with moa_serve(["--config", str(config)], log=log, api_key="k" * 24) as served:
            client = openai.OpenAI(base_url=served.url, api_key="k" * 24, max_retries=0)
            with pytest.raises(openai.APIStatusError) as failure:
                client.chat.completions.create(
                    model="echo", messages=[{"role": "user", "content": "Q?"}]
                )
            body = failure.value.response.text
    assert failure.value.status_code == 502 and "[redacted]" in body
    assert SENTINEL not in body
    assert SENTINEL not in log.read_text() and "401" in log.read_text()


@pytest.mark.parametrize("ending", ["/exit\n", ""])  # /exit, or the end of the input
def test_moa_chat_answers_five_turns_and_exits_at_once(tmp_path, ending) -> None:
    from tests.test_cli import moa as run_moa

    with fault_server({}) as server:
        agent = {"base_url": server.url}
        config = tmp_path / "moa.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "layers": [
                        [{"model": "openai:alpha", **agent}, {"model": "openai:beta", **agent}]
                    ],
                    "aggregator": {"model": "openai:omega", **agent},
                }
            )
        )
        started = time.monotonic()
        turns = "".join(f"question {n}\n" for n in range(1, 6))
        done = run_moa("chat", "--config", str(config), stdin=turns + ending)
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    answers = [line for line in done.stdout.splitlines() if line.startswith("omega says")]
    assert answers == [f"omega says: question {n}" for n in range(1, 6)]
    assert server.calls["omega"] == 5
    assert elapsed < 30


def test_log_records_are_redacted(monkeypatch, caplog) -> None:
    import logging

    from moa_graph.calls import secrets

    monkeypatch.setenv("MOA_TEST_UPSTREAM_KEY", SENTINEL)
    secrets.register("MOA_TEST_UPSTREAM_KEY")
    logger = logging.getLogger("moa_graph.test_redaction")
    logger.addFilter(secrets.RedactingFilter())
    try:
        raise RuntimeError(f"upstream said: bad key {SENTINEL}")
    except RuntimeError:
        logger.exception("call failed with %s", SENTINEL)
    assert SENTINEL not in caplog.text and caplog.text.count("[redacted]") == 2


def test_a_broken_answer_stream_is_not_followed_by_a_fallbacks_answer() -> None:
    from moa_graph.errors import StreamInterruptedError

    with fault_server({"agg": {1: dropped_after(3)}}, reply=_long) as server:
        config = moa(server, aggregator_fallbacks=["fb"])
        shown, _, error = asyncio.run(_stream_answer(create_moa(config).compile()))
    assert isinstance(error, ModelCallError)
    assert isinstance(error.__cause__, StreamInterruptedError)
    assert server.calls["fb"] == 0 and LONG_ANSWER.startswith(shown)


def test_an_empty_reply_nobody_saw_is_retried_even_when_streaming() -> None:
    from tests.fault_server import EMPTY

    with fault_server({"agg": {1: EMPTY}}, reply=_long) as server:
        shown, final, error = asyncio.run(_stream_answer(create_moa(moa(server)).compile()))
    assert error is None and server.calls["agg"] == 2
    assert shown == LONG_ANSWER == final["messages"][-1].text


def test_a_sync_call_past_the_layer_deadline_is_not_retried() -> None:
    with fault_server({"p1": {n: slow(0.4) for n in range(1, 5)}}, reply=_long) as server:
        config = moa(server, layer_deadline_s=1.0, max_retries=3)
        out = create_moa(config).compile().invoke({"messages": [("user", "Q")]})
    assert "layer deadline" in (out["proposals"][0].error or "")
    assert server.calls["p1"] == 1


@pytest.mark.parametrize("fault", [dropped_after(4, token_delay=0.05), malformed_after(4)])
def test_moa_ask_never_prints_a_spliced_answer(tmp_path, fault) -> None:
    from tests.test_cli import moa as run_moa

    with fault_server({"agg": {1: fault}}, reply=_long) as server:
        agent = {"base_url": server.url}
        config = tmp_path / "moa.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "layers": [[{"model": "openai:p1", **agent}, {"model": "openai:p2", **agent}]],
                    "aggregator": {"model": "openai:agg", **agent},
                    "backoff_s": 0.01,
                }
            )
        )
        done = run_moa("ask", "Q?", "--config", str(config))
    # The answer had started on stdout: no second attempt follows it, a clean error ends it.
    assert server.calls["agg"] == 1
    assert done.returncode == 1
    assert done.stdout.startswith("word0") and done.stdout.count("word0") == 1
    assert LONG_ANSWER.startswith(done.stdout.strip())
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "already shown" in errors[0]
    assert "Traceback" not in done.stderr
