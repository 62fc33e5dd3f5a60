"""The server's parts that need no HTTP: bind checks, naming, compiled graphs, bodies."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from moa_graph.config.model import MoAConfig
from moa_graph.errors import ConfigError
from moa_graph.graph.plan import AgentPlan, RunOptions
from moa_graph.graph.planner import Planner
from moa_graph.run.checkpoints import open_checkpointer
from moa_graph.server.app import check_bind, is_loopback, served_configs
from moa_graph.server.served import ServedModel
from moa_graph.server.wire import BodyError, ChatCompletionRequest, check_body
from tests.fake_chat import FakeChatModel


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_only_loopback_binds_without_a_key(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    check_bind(host, "key")
    if loopback:
        check_bind(host, None)
    else:
        with pytest.raises(ConfigError, match=f"refusing to listen on {host} without an API key"):
            check_bind(host, None)


def test_served_models_are_named_by_preset_config_name_or_file_stem(tmp_path: Path) -> None:
    agent = {"model": "openai:a", "base_url": "http://127.0.0.1:9/v1"}
    named = tmp_path / "one.yaml"
    named.write_text(yaml.safe_dump({"name": "first", "layers": [[agent]], "aggregator": agent}))
    unnamed = tmp_path / "two.yaml"
    unnamed.write_text(yaml.safe_dump({"layers": [[agent]], "aggregator": agent}))
    served = served_configs(["local-tiny"], [named, unnamed])
    assert list(served) == ["local-tiny", "first", "two"]
    with pytest.raises(ConfigError, match="two served models are named 'first'"):
        served_configs([], [named, named])
    with pytest.raises(ConfigError, match="nothing to serve"):
        served_configs([], [])


async def test_a_served_model_runs_on_the_checkpointer(
    tmp_path: Path, fake_model: Callable[..., FakeChatModel]
) -> None:
    config = MoAConfig(layers=[[fake_model("a")]], aggregator=fake_model("b"))
    async with open_checkpointer(tmp_path / "runs.db") as saver:
        served = ServedModel("m", config, saver)
        thread = {"configurable": {"thread_id": "t1"}}
        await served.graph.ainvoke({"messages": [("user", "Hi")]}, thread)
        state = await served.graph.aget_state(thread)
    assert state.values["messages"][-1].text == "b answers: Hi"


def request(temperature: float | None, max_tokens: int | None, scope: str) -> RunOptions:
    """Return the run options of a chat completion request with this sampling."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "moa": {"sampling": scope},
    }
    sampling = {"temperature": temperature, "max_tokens": max_tokens}
    body.update({key: value for key, value in sampling.items() if value is not None})
    return ChatCompletionRequest.model_validate(body).run_options()


def test_a_requests_sampling_is_the_default_of_the_agents_in_its_scope() -> None:
    agent = {"model": "openai:a", "base_url": "http://127.0.0.1:9/v1"}
    greedy = {**agent, "temperature": 0.0}  # an agent's own setting stays
    config = MoAConfig.model_validate(
        {"layers": [[agent, greedy]], "aggregator": agent, "max_tokens": 50}
    )
    planner = Planner(config)

    def settings(agent: AgentPlan) -> tuple[float, int]:
        model = agent.candidates[0].model
        return model.temperature, model.max_tokens  # type: ignore[attr-defined]

    plan = planner.plan(request(0.2, None, "aggregator"))
    assert [settings(a) for a in plan.agents()] == [(0.7, 50), (0.0, 50), (0.2, 50)]
    plan = planner.plan(request(0.2, 7, "all"))
    assert [settings(a) for a in plan.agents()] == [(0.2, 7), (0.0, 7), (0.2, 7)]
    assert planner.plan(request(0.2, 7, "all")) is plan  # planned once
    for tokens in range(1, 40):
        planner.plan(request(None, tokens, "aggregator"))
    assert len(planner._plans) == 32  # the most recent options only


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"messages": [[[[[]]]]]}, None, None),
        ({"messages": [{"content": [{"x": [1, "ok", None]}]}]}, None, None),
        ({"a": 1, "messages": [[[[[[[[]]]]]]]]}, "messages", "nested more than 6 levels"),
        ({"messages": [{"role": "user", "content": "\ud800x"}]}, "messages", "U+D800"),
        ({"user": "ok", "metadata": {"k\udfff": 1}}, "metadata", "U+DFFF"),
    ],
)
def test_bodies_too_deep_or_not_unicode_are_refused(
    body: dict[str, Any], param: str | None, says: str | None
) -> None:
    if says is None:
        check_body(body, max_depth=6)
        return
    with pytest.raises(BodyError, match=re.escape(says)) as caught:
        check_body(body, max_depth=6)
    assert caught.value.param == param
