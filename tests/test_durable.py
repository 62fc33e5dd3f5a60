"""Durable runs on every checkpointer (memory, SQLite, PostgreSQL), a SIGKILLed CLI run
resumed without repeating paid-for calls, and API keys kept out of everything saved."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.messages import HumanMessage
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from moa_graph import create_moa
from moa_graph.run.checkpoints import open_checkpointer, thread_config
from tests.fault_server import fault_server, hang
from tests.test_reliability import moa

POSTGRES_URL = os.environ.get("MOA_TEST_POSTGRES_URL")
"""A PostgreSQL DSN (``bash .ci/postgres.sh`` starts a server and prints one)."""

CHECKPOINTERS = ["memory", "sqlite", "postgres"]


def _location(kind: str, tmp_path: Path) -> str:
    if kind == "postgres":
        if not POSTGRES_URL:
            pytest.skip("set MOA_TEST_POSTGRES_URL (bash .ci/postgres.sh prints one)")
        return POSTGRES_URL
    return str(tmp_path / "checkpoints.sqlite")


@pytest.fixture(params=CHECKPOINTERS)
async def saver(request: Any, tmp_path: Path) -> AsyncIterator[BaseCheckpointSaver[str]]:
    if request.param == "memory":
        yield InMemorySaver()
        return
    async with open_checkpointer(_location(request.param, tmp_path)) as opened:
        yield opened


async def test_a_crashed_run_resumes_without_calling_finished_agents(saver: Any) -> None:
    thread = thread_config(f"crash-{uuid.uuid4()}")
    with fault_server({"p3": {1: hang(30)}}) as server:
        config = moa(server, timeout_s=60)
        graph = create_moa(config).compile(checkpointer=saver)
        finished: set[str] = set()

        async def run() -> None:
            async for event in graph.astream(
                {"messages": [HumanMessage("Q?")]},
                thread,
                stream_mode="custom",
                durability="sync",
            ):
                if event.get("event") == "agent_finished":
                    finished.add(event["moa_agent"])

        task = asyncio.create_task(run())
        while finished != {"p1", "p2"}:
            await asyncio.sleep(0.02)
        task.cancel()  # the crash: p3 is still waiting for its reply
        with pytest.raises(asyncio.CancelledError):
            await task

        resumed = create_moa(config).compile(checkpointer=saver)
        out = await resumed.ainvoke(None, thread)
    assert out["messages"][-1].content == "agg says: Q?"
    assert [p.content for p in out["proposals"]] == [f"p{i} says: Q?" for i in (1, 2, 3)]
    assert dict(server.calls) == {"p1": 1, "p2": 1, "p3": 2, "agg": 1}


async def test_bad_input_writes_nothing_through_the_cli(tmp_path: Path) -> None:
    store = tmp_path / "state" / "checkpoints.sqlite"
    result = _moa("ask", "  ", "--thread", "t", "--checkpoints", str(store))
    assert result.returncode == 1 and "the prompt is empty" in result.stderr
    with fault_server({}) as server:
        config_file = _config_file(tmp_path, server, aggregator_window=100)
        result = _moa(
            "ask", "word " * 500, "-c", config_file, "--thread", "t", "--checkpoints", str(store)
        )
    assert result.returncode == 1
    assert "does not fit agent 'agg'" in result.stderr
    assert not store.parent.exists()
    assert sum(server.calls.values()) == 0


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_sigkilled_cli_run_resumes_without_repeating_calls(kind: str, tmp_path: Path) -> None:
    location = _location(kind, tmp_path)
    thread = f"kill-{uuid.uuid4()}"
    with fault_server({"p3": {1: hang(60)}}) as server:
        config_file = _config_file(tmp_path, server)
        args = ["ask", "Q?", "-c", config_file, "--thread", thread, "--checkpoints", location]
        process = subprocess.Popen(
            [sys.executable, "-m", "moa_graph.cli.app", *args, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        deadline = time.monotonic() + 60
        while not (server.calls["p1"] and server.calls["p2"] and server.calls["p3"]):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.5)  # the fast agents' replies reach the checkpointer
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert dict(server.calls) == {"p1": 1, "p2": 1, "p3": 1}

        resume = ["ask", "-c", config_file, "--thread", thread, "--resume", "--json"]
        result = _moa(*resume, "--checkpoints", location)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["answer"] == "agg says: Q?"
        assert dict(server.calls) == {"p1": 1, "p2": 1, "p3": 2, "agg": 1}

        again = _moa(*resume, "--checkpoints", location)
    assert again.returncode == 1 and "no unfinished run to resume" in again.stderr


class _Recorder(BaseTracer):
    """Keeps every traced run, as a tracing backend would receive it."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        self.runs.append(run)


async def test_api_keys_never_reach_state_checkpoints_events_logs_or_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sentinel = f"sk-sentinel-{uuid.uuid4().hex}"
    monkeypatch.setenv("MOA_TEST_KEY", sentinel)
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "checkpoints.sqlite"
    recorder = _Recorder()
    with fault_server({"p1": {1: hang(0.1)}}) as server:
        config = moa(server)
        keyed = [a.model_copy(update={"api_key_env": "MOA_TEST_KEY"}) for a in config.layers[0]]
        aggregator = config.aggregator.model_copy(update={"api_key_env": "MOA_TEST_KEY"})
        config = config.model_copy(update={"layers": [keyed], "aggregator": aggregator})
        async with open_checkpointer(store) as saver:
            graph = create_moa(config).compile(checkpointer=saver)
            run_config = {**thread_config("secret"), "callbacks": [recorder]}
            events = [
                part
                async for part in graph.astream(
                    {"messages": [HumanMessage("Q?")]},
                    run_config,  # type: ignore[arg-type]
                    stream_mode=["custom", "values", "messages", "updates", "debug"],
                )
            ]
            state = await graph.aget_state(thread_config("secret"))
    assert state.values["messages"][-1].content == "agg says: Q?"
    assert sentinel.encode() not in store.read_bytes()
    for suffix in ("-wal", "-shm"):
        extra = Path(f"{store}{suffix}")
        assert not extra.exists() or sentinel.encode() not in extra.read_bytes()
    assert sentinel not in caplog.text and "DEBUG" in caplog.text
    assert sentinel not in repr(events) and sentinel not in repr(state)
    assert recorder.runs
    assert sentinel not in "".join(run.model_dump_json() for run in recorder.runs)


def _config_file(tmp_path: Path, server: Any, aggregator_window: int | None = None) -> str:
    config = moa(server, timeout_s=120)
    data = config.to_dict()
    if aggregator_window:
        data["aggregator"]["context_window"] = aggregator_window
    path = tmp_path / "moa.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _env() -> dict[str, str]:
    return {**os.environ, "MOA_CHECKPOINTS": "/nonexistent/must-not-be-used.sqlite"}


def _moa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moa_graph.cli.app", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
