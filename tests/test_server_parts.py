"""The server's parts that need no HTTP: bind checks, naming, compiled graphs, bodies."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from moa_graph.config import MoAConfig
from moa_graph.durable import open_checkpointer
from moa_graph.errors import ConfigError
from moa_graph.openai_api import BodyError, check_body
from moa_graph.server import _ServedModel, check_bind, is_loopback, served_configs
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
        served = _ServedModel("m", config, saver)
        thread = {"configurable": {"thread_id": "t1"}}
        await served.default.ainvoke({"messages": [("user", "Hi")]}, thread)
        state = await served.default.aget_state(thread)
    assert state.values["messages"][-1].text == "b answers: Hi"


def test_graphs_are_compiled_once_per_sampling() -> None:
    agent = {"model": "openai:a", "base_url": "http://127.0.0.1:9/v1"}
    config = MoAConfig.model_validate({"layers": [[agent]], "aggregator": agent})
    served = _ServedModel("m", config, None)
    assert served.graph(None, None, "all") is served.default
    variant = served.graph(0.2, None, "aggregator")
    assert served.graph(0.2, None, "aggregator") is variant
    assert served.graph(0.2, None, "all") is not variant
    for tokens in range(1, 40):
        served.graph(None, tokens, "aggregator")
    assert len(served.variants) == 16
    assert served.graph(None, None, "aggregator") is served.default


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
