"""Local weights are read where a run starts, never while a graph is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from moa_graph import create_moa
from moa_graph.local import WeightsNotInstalledError, chat_model, shutdown
from moa_graph.local.server import running_servers

NOT_INSTALLED = (
    r"^local model 'smollm2-135m' is not installed: run `moa models install smollm2-135m`"
)


def test_a_local_graph_builds_without_its_weights(models_dir: Path) -> None:
    graph = create_moa("local-tiny").compile()  # the weights are not there

    assert running_servers() == []
    with pytest.raises(WeightsNotInstalledError, match=NOT_INSTALLED):
        graph.invoke({"messages": [HumanMessage("hi")]})
    assert running_servers() == []


async def test_an_async_run_fails_at_its_start_too(models_dir: Path) -> None:
    graph = create_moa("local-tiny").compile()

    events = []
    with pytest.raises(WeightsNotInstalledError, match=NOT_INSTALLED):
        async for event in graph.astream({"messages": [HumanMessage("hi")]}, stream_mode="custom"):
            events.append(event)
    assert events == []  # no layer started, no model was called


@pytest.mark.parametrize(
    "command",
    [["ask", "hi"], ["serve", "--port", "0"]],
    ids=["ask", "serve"],  # a server loads its models as it starts: it fails at once
)
def test_the_command_line_says_so_in_one_line(models_dir: Path, command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "moa_graph.cli", *command, "--preset", "local-tiny"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MOA_GRAPH_CACHE": str(models_dir)},
    )
    assert result.returncode == 1
    assert result.stderr == (
        "error: local model 'smollm2-135m' is not installed: "
        "run `moa models install smollm2-135m`\n"
    )


@pytest.mark.local
def test_a_model_built_unstarted_starts_its_server_at_first_call(smollm2: str) -> None:
    model = chat_model(smollm2, temperature=0, max_tokens=4, start=False)
    assert running_servers() == [] and not model.started

    assert model.invoke("Hi").content
    (server,) = running_servers()
    assert model.started

    shutdown()  # the next call starts a fresh server and is pointed at it
    assert model.invoke("Hi").content
    (fresh,) = running_servers()
    assert fresh is not server
