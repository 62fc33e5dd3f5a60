"""Config files that would explode or escape: YAML aliases that expand a small file
into a huge one ("billion laughs"), and names that would write outside ``--out``."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from moa_graph.config.files import ALIAS_BUDGET, load_config
from moa_graph.errors import ConfigError
from moa_graph.eval.runner import config_label
from tests.test_cli import moa as run_moa


def _config(params: str) -> str:
    """A config whose first agent's ``params`` are the YAML flow mapping ``params``."""
    return (
        "layers:\n"
        "  - - model: openai:a\n"
        "      base_url: http://127.0.0.1:9/v1\n"
        f"      params: {params}\n"
        "    - {model: 'openai:b', base_url: 'http://127.0.0.1:9/v1'}\n"
        "aggregator: {model: 'openai:c', base_url: 'http://127.0.0.1:9/v1'}\n"
    )


def _laughs(tmp_path: Path, levels: int = 9) -> Path:
    """A 1 kB YAML file whose agent params expand to 10**levels strings."""
    anchors = ['l0: &l0 "lol"']
    for n in range(1, levels + 1):
        anchors.append(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]")
    path = tmp_path / "laughs.yaml"
    path.write_text(_config("{" + ", ".join(anchors) + "}"))
    return path


def _refused(path: Path) -> str:
    return (
        f"config file {path} is refused: its YAML aliases expand it by more than "
        f"{ALIAS_BUDGET} nodes"
    )


def test_a_billion_laughs_config_is_refused_at_once_in_little_memory(tmp_path: Path) -> None:
    path = _laughs(tmp_path)
    assert path.stat().st_size < 2_000
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ConfigError) as failure:
            load_config(path)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(failure.value) == _refused(path)
    assert elapsed < 2 and peak < 10_000_000


def test_moa_ask_prints_the_refusal_on_one_line(tmp_path: Path) -> None:
    path = _laughs(tmp_path)
    done = run_moa("ask", "Q?", "--config", str(path))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {_refused(path)}"


def test_an_alias_that_holds_itself_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(_config("{loop: &loop [*loop]}"))
    with pytest.raises(ConfigError) as failure:
        load_config(path)
    assert str(failure.value) == _refused(path)


def test_aliases_within_the_budget_load(tmp_path: Path) -> None:
    # An agent written once and reused: what anchors are for.
    path = tmp_path / "reuse.yaml"
    path.write_text(
        "layers:\n"
        "  - - &agent {model: 'openai:a', base_url: 'http://127.0.0.1:9/v1',"
        " params: {stop: [x, y, z]}}\n"
        "    - *agent\n    - *agent\n"
        "  - [*agent, *agent]\n"
        "aggregator: *agent\n"
    )
    config = load_config(path)
    assert [len(layer) for layer in config.layers] == [3, 2]
    assert config.aggregator.params == {"stop": ["x", "y", "z"]}


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "..", "x\\y"])
def test_moa_eval_run_refuses_a_config_name_that_is_a_path(tmp_path: Path, name: str) -> None:
    path = tmp_path / "escape.yaml"
    agent = {"model": "openai:a", "base_url": "http://127.0.0.1:9/v1"}
    path.write_text(yaml.safe_dump({"name": name, "layers": [[agent]], "aggregator": agent}))
    out = tmp_path / "deep" / "out"
    done = run_moa("eval", "run", "gsm8k", "--out", str(out), "--config", str(path))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: config file {path}: invalid config name {name!r}: use only letters, "
        "digits, '-', '_' and '.' (not first, not '..')"
    )
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == [Path("escape.yaml")]


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "x\\y"])
def test_a_config_given_as_data_never_names_a_path_for_its_results(name: str) -> None:
    from moa_graph import MoAConfig

    agent = {"model": "openai:a", "base_url": "http://127.0.0.1:9/v1"}
    config = MoAConfig.model_validate({"name": name, "layers": [[agent]], "aggregator": agent})
    with pytest.raises(ConfigError) as failure:
        config_label(config)
    assert str(failure.value) == (
        f"invalid config name {name!r}: it names a results file, not a path"
    )
