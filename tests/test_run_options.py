"""How a run is asked for (issue 28): one RunOptions, one resolver, one factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from moa_graph import ConfigError, MoAConfig, MoAContext, create_moa, save_config
from moa_graph.config.resolve import named_configs, resolve_config
from moa_graph.graph.frozen import FrozenDict, thaw
from moa_graph.graph.plan import RunOptions
from moa_graph.graph.planner import Planner
from moa_graph.server.options import ServerOptions
from tests.fake_chat import FakeChatModel
from tests.tool_schemas import MULTIPLY

Make = Callable[..., FakeChatModel]

TOOL = MULTIPLY


def test_options_keep_tools_as_frozen_json_that_hashes() -> None:
    tool = {"function": dict(reversed(list(TOOL["function"].items()))), "type": "function"}
    options = RunOptions(
        tools=(TOOL,), tool_choice={"type": "function", "function": {"name": "multiply"}}
    )
    same = RunOptions(
        tools=(tool,), tool_choice={"function": {"name": "multiply"}, "type": "function"}
    )
    assert options == same and hash(options) == hash(same)  # key order is not a difference
    assert isinstance(options.tools[0], FrozenDict) and options.tools[0] == TOOL
    assert thaw(options.tools) == [TOOL] and isinstance(thaw(options.tools)[0], dict)
    with pytest.raises(TypeError):
        options.tools[0]["type"] = "other"  # type: ignore[index]
    assert RunOptions(tools=(TOOL,), response_format={"type": "json_object"}) != options
    assert RunOptions(tools=[]) == RunOptions() and hash(RunOptions(tools=[])) == hash(RunOptions())  # type: ignore[arg-type]


def test_options_are_planned_once_per_distinct_tools(fake_model: Make) -> None:
    config = MoAConfig(layers=[[fake_model("a")]], aggregator=fake_model("b"))
    planner = Planner(config)
    first = planner.plan(RunOptions(tools=(TOOL,)))
    assert planner.plan(RunOptions(tools=({**TOOL},))) is first
    assert first.aggregator.tools == (TOOL,) and first.aggregator.tool_set is not None


def test_one_resolver_for_every_way_to_name_a_config(tmp_path: Path, fake_model: Make) -> None:
    config = resolve_config("local-tiny")
    assert config.name == "local-tiny" and resolve_config(config) is config
    save_config(config.model_copy(update={"name": None}), tmp_path / "mine.yaml")
    assert resolve_config(tmp_path / "mine.yaml").layers == config.layers
    assert resolve_config(str(tmp_path / "mine.yaml")).layers == config.layers
    assert resolve_config(config.to_dict()).aggregator == config.aggregator
    named = named_configs(["local-tiny"], [tmp_path / "mine.yaml"])
    assert [name for name, _ in named] == ["local-tiny", "mine"]  # a file by its stem


def test_a_preset_is_never_read_as_a_path(tmp_path: Path) -> None:
    save_config(resolve_config("local-tiny"), tmp_path / "x.yaml")
    with pytest.raises(ConfigError, match="preset"):
        named_configs([str(tmp_path / "x.yaml")])


def test_a_studio_graph_is_three_layers_deep_unless_told(fake_model: Make) -> None:
    config = MoAConfig(layers=[[fake_model("a")]], aggregator=fake_model("b"))
    nodes = create_moa(config, context_schema=MoAContext).compile().get_graph().nodes
    assert {"layer1/a", "layer2/a", "layer3/a"} <= set(nodes)
    assert "layer2/a" not in create_moa(config).compile().get_graph().nodes
    deep = MoAConfig(layers=[[fake_model("a")]] * 4, aggregator=fake_model("b"))
    with pytest.raises(ValueError, match="max_layers=3 is below the config's 4 layers"):
        create_moa(deep, context_schema=MoAContext)


def test_runs_switch_presets_through_the_loader_once_per_name(fake_model: Make) -> None:
    config = MoAConfig(layers=[[fake_model("a")]], aggregator=fake_model("b"), name="own")
    other = MoAConfig(layers=[[fake_model("p")]], aggregator=fake_model("q"), name="other")
    loaded: list[str] = []

    def load(name: str) -> MoAConfig:
        loaded.append(name)
        return other

    graph = create_moa(config, context_schema=MoAContext, load=load).compile()
    ask: dict[str, Any] = {"messages": [HumanMessage("Q?")]}
    for _ in range(2):
        out = graph.invoke(ask, context={"preset": "other"})
        assert out["messages"][-1].content == "q answers: Q?"
    assert loaded == ["other"]
    plain = create_moa(config, load=load).compile()  # RunOptions may switch too, given a loader
    assert plain.invoke(ask, context=RunOptions(preset="other"))["messages"][-1].content == (
        "q answers: Q?"
    )


def test_server_options_never_show_the_key() -> None:
    options = ServerOptions(api_key="sk-secret-value")
    assert "sk-secret-value" not in repr(options) and options.api_key == "sk-secret-value"
