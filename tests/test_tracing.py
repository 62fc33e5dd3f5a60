"""LangSmith tracing through the standard environment variables, against a loopback stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import langsmith.run_trees
import langsmith.utils
import pytest
from langchain_core.tracers.langchain import wait_for_all_tracers

from moa_graph.calls.secrets import REDACTED
from moa_graph.run.factory import create_moa
from tests.langsmith_server import FakeLangSmithServer, serve
from tests.openai_server import FakeOpenAIServer
from tests.openai_server import serve as serve_openai
from tests.test_redaction import KEY, KEY_ENV
from tests.test_redaction import _config as echo_config
from tests.test_redaction import _echo as echo_key

SENTINEL = "sk-SENTINEL-must-never-be-traced-7f3a"


@pytest.fixture
def langsmith_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLangSmithServer]:
    with serve() as server:
        monkeypatch.setenv("LANGSMITH_TRACING", "true")
        monkeypatch.setenv("LANGSMITH_ENDPOINT", server.url)
        monkeypatch.setenv("LANGSMITH_API_KEY", "fake-langsmith-key")
        monkeypatch.setenv("LANGSMITH_PROJECT", "moa-tracing-test")
        # The client and the environment lookups are cached process-wide.
        langsmith.utils.get_env_var.cache_clear()
        monkeypatch.setattr(langsmith.run_trees, "_CLIENT", None)
        yield server
        wait_for_all_tracers()
    langsmith.utils.get_env_var.cache_clear()


def _metadata(run: dict[str, Any]) -> dict[str, Any]:
    return (run.get("extra") or {}).get("metadata") or {}


def test_a_moa_call_traces_one_tree_with_names_metadata_usage_and_no_key(
    langsmith_server: FakeLangSmithServer,
    openai_server: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOA_TEST_PROVIDER_KEY", SENTINEL)
    agent = {"base_url": openai_server.url, "api_key_env": "MOA_TEST_PROVIDER_KEY"}
    config = {
        "name": "traced",
        "layers": [
            [{"model": "openai:alpha", **agent}, {"model": "openai:beta", **agent}],
            [{"model": "openai:gamma", **agent}],
        ],
        "aggregator": {"model": "openai:delta", **agent},
    }
    graph = create_moa(config).compile()
    graph.invoke({"messages": [("user", "What is 2 + 2?")]})
    wait_for_all_tracers()

    # The provider did receive the key, so its absence from traces means something.
    assert openai_server.authorizations == [f"Bearer {SENTINEL}"] * 4
    assert langsmith_server.paths, "the client sent nothing"
    assert all(SENTINEL.encode() not in body for body in langsmith_server.bodies)

    runs = langsmith_server.runs
    roots = [r for r in runs.values() if not r.get("parent_run_id")]
    assert [r["name"] for r in roots] == ["MoA traced"]
    root = roots[0]
    assert all(r["trace_id"] == root["id"] for r in runs.values())
    assert root["end_time"] and root["outputs"]["messages"]

    nodes = {r["name"]: r for r in runs.values() if r.get("parent_run_id") == root["id"]}
    assert {"layer1/alpha", "layer1/beta", "layer2/gamma", "aggregator"} <= set(nodes)
    gamma = _metadata(nodes["layer2/gamma"])
    expected = {"role": "proposer", "layer": 2, "agent": "gamma", "model": "openai:gamma"}
    assert {key: gamma[key] for key in expected} == expected
    assert gamma["preset"] == "traced"
    assert _metadata(nodes["aggregator"])["role"] == "aggregator"

    llm_runs = {r["name"]: r for r in runs.values() if r.get("run_type") == "llm"}
    assert set(llm_runs) == {"alpha", "beta", "gamma", "delta"}
    for name, run in llm_runs.items():
        # Each model run sits under its node (through the node's runnable).
        ancestors = []
        parent = run.get("parent_run_id")
        while parent:
            ancestors.append(runs[parent]["name"])
            parent = runs[parent].get("parent_run_id")
        node = "aggregator" if name == "delta" else next(n for n in nodes if n.endswith(name))
        assert node in ancestors and ancestors[-1] == "MoA traced"
        metadata = _metadata(run)
        role = "aggregator" if name == "delta" else "proposer"
        assert metadata["moa_role"] == role
        assert metadata["moa_agent"] == name
        assert metadata["moa_model"] == f"openai:{name}"
        assert metadata["moa_preset"] == "traced"
        assert f"moa:{role}" in run["tags"]
        message = run["outputs"]["generations"][0][0]["message"]["kwargs"]
        usage = message["usage_metadata"]
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert _metadata(llm_runs["gamma"])["moa_layer"] == 2
    assert _metadata(llm_runs["delta"])["moa_layer"] == 3


def test_a_key_the_upstream_echoes_is_redacted_in_traces(
    langsmith_server: FakeLangSmithServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The upstream answers with the key it was sent (tests.test_redaction): the state,
    # the answer and the references are redacted, and so must the model runs be.
    with serve_openai() as upstream:
        upstream.fault = echo_key
        monkeypatch.setenv(KEY_ENV, KEY)
        graph = create_moa(echo_config(upstream.url)).compile()
        out = graph.invoke({"messages": [("user", "What did you see?")]})
        wait_for_all_tracers()
        assert {a.removeprefix("Bearer ") for a in upstream.authorizations} == {KEY}
    assert out["messages"][-1].text == f"gamma saw {REDACTED} today"
    llm_runs = [r for r in langsmith_server.runs.values() if r.get("run_type") == "llm"]
    assert len(llm_runs) == 3 and all(r.get("outputs") for r in llm_runs)
    assert REDACTED in json.dumps(llm_runs)
    assert all(KEY.encode() not in body for body in langsmith_server.bodies)
