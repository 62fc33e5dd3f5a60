"""``langgraph dev`` serves every graph of langgraph.json offline; driven by the SDK.

The graphs' models are pointed at the loopback fake OpenAI server through
``MOA_GRAPHS_BASE_URL``: the test is then deterministic, fast, and needs no model
weights, while still going through real HTTP model calls from the served process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from tests.openai_server import FakeOpenAIServer
from tests.server_process import free_port, stop, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = json.loads((ROOT / "langgraph.json").read_text())["graphs"]
STARTUP_S = 120


@pytest.fixture
def served(openai_server: FakeOpenAIServer, tmp_path: Path) -> Iterator[str]:
    """A ``langgraph dev`` server on a free loopback port; yields its URL."""
    executable = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    assert executable, "langgraph-cli[inmem] is not installed"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    env |= {
        "LANGSMITH_TRACING": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "MOA_GRAPHS_BASE_URL": openai_server.url,
        "MOA_GRAPHS_PRESET": "local-tiny",
    }
    log = tmp_path / "server.log"
    command = [executable, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1"]
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*command, "--port", f"{port}"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(server, f"{url}/ok", log=log, timeout=STARTUP_S)
        yield url
    finally:
        stop(server, timeout=20)


async def test_langgraph_dev_serves_every_graph(
    served: str, openai_server: FakeOpenAIServer
) -> None:
    client = get_client(url=served, api_key=None)
    assistants = await client.assistants.search(limit=100)
    assert {a["graph_id"] for a in assistants} == set(GRAPHS)

    moa = next(a for a in assistants if a["graph_id"] == "moa")
    drawn = await client.assistants.get_graph(moa["assistant_id"])
    nodes = {n["id"]: n for n in drawn["nodes"]}
    assert nodes["layer1/smollm2-135m"]["metadata"]["model"] == "openai:smollm2-135m"
    schemas = await client.assistants.get_schemas(moa["assistant_id"])
    assert set(schemas["context_schema"]["properties"]) == {
        "preset",
        "temperature",
        "layers",
        "show_proposals",
    }

    thread = await client.threads.create()
    events = []
    async for part in client.runs.stream(
        thread["thread_id"],
        "moa",
        input={"messages": [{"role": "user", "content": "Name a prime."}]},
        context={"layers": 2, "temperature": 0.3},
        stream_mode=["updates", "custom"],
        stream_subgraphs=True,
    ):
        events.append(part)
    assert not [e for e in events if e.event == "error"], events
    updated = [node for e in events if e.event.startswith("updates") for node in e.data or {}]
    assert sorted(updated) == sorted(
        ["layer1/smollm2-135m", "layer1/smollm2-135m-2", "layer1/smollm2-135m-3"] * 1
        + ["layer2/smollm2-135m", "layer2/smollm2-135m-2", "layer2/smollm2-135m-3"]
        + ["layer3/smollm2-135m", "layer3/smollm2-135m-2", "layer3/smollm2-135m-3"]
        + ["aggregator"]
    )
    custom = [e.data for e in events if e.event.startswith("custom")]
    assert [c["moa_layer"] for c in custom if c["event"] == "layer_started"] == [1, 2]

    state = await client.threads.get_state(thread["thread_id"])
    values = state["values"]
    assert (
        values["messages"][-1]["content"]
        == "smollm2-135m says: " + (openai_server.requests[-1]["messages"][-1]["content"])
    )
    assert [(p["layer"], p["agent"]) for p in values["proposals"]] == [
        (layer, agent)
        for layer in (1, 2)
        for agent in ("smollm2-135m", "smollm2-135m-2", "smollm2-135m-3")
    ]
    # Six proposers and the aggregator called the model; the aggregator keeps its 0.
    assert openai_server.calls["smollm2-135m"] == 7
    temperatures = sorted(r["temperature"] for r in openai_server.requests)
    assert temperatures == [0.0] + [0.3] * 6
