"""A user's mistake gets one line that names what is wrong, and changes nothing.

Preset names that are paths, durations that never end, base URLs that are not
URLs, broken config files and checkpoint paths; and text from users and models is
printed literally, never read as console markup.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import socket
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import ValidationError
from rich.console import Console

from moa_graph import ConfigError, MoAConfig, MoAContext, create_moa, load_config, load_preset
from moa_graph.cli.display import ProgressTable, render_proposals, render_run
from moa_graph.config.model import config_from_data
from moa_graph.config.presets import preset_data
from moa_graph.errors import ModelCallError
from moa_graph.graph.state import Proposal
from moa_graph.run.checkpoints import default_checkpoints, open_checkpointer
from moa_graph.run.streaming import Event, Finished, Progress, Token
from tests.test_cli import moa

BASE: dict[str, Any] = {"layers": [["openai:a"]], "aggregator": "openai:a"}


def bad_name(name: str) -> str:
    return (
        f"invalid preset name {name!r}: use only letters, digits, '-', '_' and '.' "
        "(not first, not '..')"
    )


# 1. Preset names are names, not paths.


@pytest.fixture
def outside(tmp_path: Path) -> str:
    """A valid config file outside the presets, named relative to the presets folder."""
    (tmp_path / "outside.yaml").write_text(yaml.safe_dump(BASE))
    presets = Path(str(resources.files("moa_graph.config.presets")))
    return os.path.relpath(tmp_path / "outside", presets)


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "/etc/passwd", ".x", "a..b", "", "a b"])
def test_load_preset_and_preset_data_refuse_what_is_not_a_name(name: str) -> None:
    for load in (load_preset, preset_data):
        with pytest.raises(ConfigError) as error:
            load(name)
        assert str(error.value) == bad_name(name)


def test_a_path_to_a_real_file_is_not_a_preset(outside: str) -> None:
    assert outside.startswith("..")
    with pytest.raises(ConfigError) as error:
        load_preset(outside)
    assert str(error.value) == bad_name(outside)


def test_extends_inside_a_preset_is_checked(
    tmp_path: Path, outside: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "child.yaml").write_text("extends: ../outside\nmax_tokens: 9\n")
    monkeypatch.setattr("moa_graph.config.presets._PRESETS", presets)
    with pytest.raises(ConfigError) as error:
        load_preset("child")
    assert str(error.value) == bad_name("../outside")


def test_plain_names_still_load() -> None:
    assert load_preset("together-moa-lite").name == "together-moa-lite"
    with pytest.raises(ConfigError, match=r"^unknown preset 'v1.2_x-y' \(known: "):
        load_preset("v1.2_x-y")


def test_run_context_refuses_a_path_as_preset(fake_model) -> None:
    with pytest.raises(ValidationError) as error:
        MoAContext(preset="../../x")
    (problem,) = error.value.errors()
    assert problem["loc"] == ("preset",)
    assert problem["msg"] == "Value error, " + bad_name("../../x")
    assert MoAContext(preset="").preset is None  # empty: the graph's own
    assert MoAContext(preset="local").preset == "local"

    loaded: list[str] = []

    def load(name: str) -> MoAConfig:
        loaded.append(name)
        raise AssertionError("never loaded")

    own = MoAConfig(layers=[[fake_model("a")]], aggregator=fake_model("agg"), name="t")
    graph = create_moa(own, context_schema=MoAContext, load=load).compile()
    with pytest.raises(ValidationError, match=re.escape(bad_name("/etc/x"))):
        graph.invoke({"messages": [("user", "Q?")]}, context={"preset": "/etc/x"})
    assert loaded == []


def test_cli_refuses_a_path_as_preset(outside: str) -> None:
    for args in (["presets", "show", outside], ["ask", "hi", "--preset", outside]):
        result = moa(*args)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == f"error: {bad_name(outside)}\n"


# 2. Durations are finite and not negative; base URLs are http(s).


@pytest.mark.parametrize(
    "field", ["timeout_s", "backoff_s", "max_backoff_s", "max_retry_after_s", "layer_deadline_s"]
)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_durations_are_finite(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_data({**BASE, field: value})
    assert str(error.value) == f"invalid config: {field}: Input should be a finite number"


@pytest.mark.parametrize(
    ("field", "bound"),
    [
        ("timeout_s", "greater than 0"),
        ("backoff_s", "greater than or equal to 0"),
        ("max_backoff_s", "greater than or equal to 0"),
        ("max_retry_after_s", "greater than or equal to 0"),
        ("layer_deadline_s", "greater than 0"),
    ],
)
def test_durations_are_not_negative(field: str, bound: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_data({**BASE, field: -1})
    assert str(error.value) == f"invalid config: {field}: Input should be {bound}"


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_agent_timeout_and_rate_limits_are_finite(value: float) -> None:
    agent = {"model": "openai:a", "timeout_s": value}
    with pytest.raises(ConfigError) as error:
        config_from_data({**BASE, "layers": [[agent]], "rate_limits": {"openai": value}})
    assert str(error.value) == (
        "invalid config: layers.0.0.timeout_s: Input should be a finite number; "
        "rate_limits.openai: Input should be a finite number"
    )


def test_infinite_backoff_in_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "moa.yaml"
    path.write_text("layers: [[openai:a]]\naggregator: openai:a\nbackoff_s: .inf\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert (
        str(error.value)
        == f"invalid config file {path}: backoff_s: Input should be a finite number"
    )


@pytest.mark.parametrize(
    "url", ["ftp://x", "not a url", "localhost:8000/v1", "http://", "file:///x"]
)
def test_base_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_data({**BASE, "aggregator": {"model": "openai:a", "base_url": url}})
    assert str(error.value) == (
        f"invalid config: aggregator.base_url: {url!r} is not an http:// or https:// URL"
    )


def test_http_and_https_base_urls_are_accepted() -> None:
    for url in ("http://127.0.0.1:8000/v1", "https://api.example.com/v1"):
        agent = {"model": "openai:a", "base_url": url}
        assert config_from_data({**BASE, "aggregator": agent}).aggregator.base_url == url


# 3. Config file errors name the file, the line where known, and every bad key.


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(path)
    return str(error.value)


def test_every_misspelled_key_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path, "x.yaml", "layrs: [[openai:a]]\naggregatr: openai:a\nlayers: [[openai:a]]\n"
    )
    assert load_error(path) == (
        f"invalid config file {path}: aggregator: field required; "
        "layrs: unknown field (did you mean 'layers'?); "
        "aggregatr: unknown field (did you mean 'aggregator'?)"
    )


def test_misspelled_agent_key_and_unknown_key(tmp_path: Path) -> None:
    text = "layers: [[{model: openai:a, temprature: 1}]]\naggregator: openai:a\ncolour: red\n"
    path = write(tmp_path, "x.yaml", text)
    assert load_error(path) == (
        f"invalid config file {path}: layers.0.0.temprature: unknown field "
        "(did you mean 'temperature'?); colour: unknown field"
    )


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "aggregator: openai:a\nlayers: [[openai:a]\n")
    assert load_error(path) == (
        f"config file {path} is malformed at line 3, column 1: expected ',' or ']', "
        "but got '<stream end>' (while parsing a flow sequence at line 2, column 9)"
    )


def test_json_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '{"layers": [\n  1,]}')
    assert (
        load_error(path) == f"config file {path} is malformed at line 2, column 5: Expecting value"
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.yaml", "layers: " + "[" * 5000 + "]" * 5000),
        ("deep.yaml", "layers: " + "{a: " * 5000 + "1" + "}" * 5000),
        ("deep.json", "[" * 5000 + "]" * 5000),
        ("deep.json", '{"a": ' * 5000 + "1" + "}" * 5000),
        ("deep.toml", "a = " + "[" * 5000 + "]" * 5000),
    ],
)
def test_too_deeply_nested_file(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    assert load_error(path) == f"config file {path} is nested too deeply"


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.yaml", "layers: [[openai:é]]\n".encode("latin-1"))
    assert load_error(path) == f"config file {path} is not UTF-8 text: byte 0xe9 at offset 17"


def test_cli_prints_config_file_errors_on_one_line(tmp_path: Path) -> None:
    misspelled = write(tmp_path, "x.yaml", "layers: [[openai:a]]\naggregatr: openai:a\n")
    broken = write(tmp_path, "y.yaml", "layers: [[openai:a]\n")
    for path, message in [
        (
            misspelled,
            f"invalid config file {misspelled}: aggregator: field required; "
            "aggregatr: unknown field (did you mean 'aggregator'?)",
        ),
        (
            broken,
            f"config file {broken} is malformed at line 2, column 1: expected ',' or ']', "
            "but got '<stream end>' (while parsing a flow sequence at line 1, column 9)",
        ),
    ]:
        result = moa("ask", "hi", "--config", str(path))
        assert result.returncode == 1
        assert result.stderr == f"error: {message}\n"


# 4. Text from users and models is printed literally.


def test_error_lines_print_markup_and_emoji_codes_literally(tmp_path: Path) -> None:
    text = (
        "layers: [[{model: openai:a, name: 'openai:a:'}]]\naggregator: openai:a\n"
        "'[bold]x[/bold]': 1\n"
    )
    path = write(tmp_path, "x.yaml", text)
    result = moa("ask", "hi", "--config", str(path))
    assert result.stderr == (
        f"error: invalid config file {path}: layers.0.0.name: agent name 'openai:a:' is empty "
        "or has '|', ':' or spaces; [bold]x[/bold]: unknown field\n"
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_failed_model_is_named_literally(tmp_path: Path, openai_server) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    config = {
        "max_retries": 0,
        "layers": [[{"model": "openai:alpha", "base_url": openai_server.url}]],
        "aggregator": {"model": "openai:a", "base_url": dead},
    }
    path = write(tmp_path, "dead.yaml", yaml.safe_dump(config))
    result = moa("ask", "hi", "--config", str(path))
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: aggregator 'a' failed: openai:a: ")
    assert "🅰" not in result.stderr
    # The table ends as the run did: the proposer answered, the aggregator failed.
    assert re.search(r"^agg +a +openai:a +failed", result.stderr, re.MULTILINE)


def test_the_streamed_answer_is_printed_literally(tmp_path: Path, openai_server) -> None:
    agent = {"base_url": openai_server.url}
    config = {
        "layers": [[{"model": "openai:alpha", **agent}]],
        "aggregator": {"model": "openai:omega", **agent},
    }
    path = write(tmp_path, "moa.yaml", yaml.safe_dump(config))
    result = moa("ask", ":a: [bold]x[/bold]", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "omega says: :a: [bold]x[/bold]\n"


def test_table_and_proposals_print_names_and_models_literally() -> None:
    agent = {"model": "openai:a:", "name": "[bold]x[/bold]"}
    config = MoAConfig(layers=[[agent]], aggregator="openai:agg")
    err = Console(file=io.StringIO(), width=100)
    err.print(ProgressTable(config))
    assert "[bold]x[/bold]  openai:a:" in err.file.getvalue()

    proposal = Proposal(
        turn=1,
        layer=1,
        index=0,
        agent="[bold]x[/bold]",
        model="openai:a:",
        content=":a: [red]y[/red]",
    )
    console = Console(file=io.StringIO(), width=100)
    render_proposals([proposal], console)
    shown = console.file.getvalue()
    assert "layer 1 · [bold]x[/bold] · openai:a:" in shown
    assert ":a: [red]y[/red]" in shown


# 5. Checkpoint paths: no folder is made up, an unusable file is named.


def test_checkpoint_folder_that_does_not_exist(
    config_file: Path, tmp_path: Path, openai_server
) -> None:
    store = tmp_path / "missing" / "deeper" / "x.sqlite"
    result = moa("ask", "hi", "-c", str(config_file), "--thread", "t", "--checkpoints", str(store))
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot open checkpoint file {store}: folder {store.parent} does not exist\n"
    )
    assert not (tmp_path / "missing").exists()
    assert sum(openai_server.calls.values()) == 0


def test_checkpoint_file_that_cannot_be_opened(config_file: Path, tmp_path: Path) -> None:
    result = moa(
        "ask", "hi", "-c", str(config_file), "--thread", "t", "--checkpoints", str(tmp_path)
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == f"error: cannot open checkpoint file {tmp_path}: unable to open database file\n"
    )


async def test_checkpoint_file_that_is_not_a_database(tmp_path: Path) -> None:
    store = write(tmp_path, "x.sqlite", "not a database, " * 100)
    with pytest.raises(ConfigError) as error:
        async with open_checkpointer(store):
            pass
    assert str(error.value) == f"cannot open checkpoint file {store}: file is not a database"
    file = tmp_path / "notes.txt"
    file.write_text("")
    with pytest.raises(ConfigError) as error:
        async with open_checkpointer(file / "x.sqlite"):
            pass
    assert str(error.value) == (
        f"cannot open checkpoint file {file / 'x.sqlite'}: {file} is not a folder"
    )


async def test_only_the_default_checkpoint_folder_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOA_CHECKPOINTS", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    async with open_checkpointer(default_checkpoints()):
        pass
    assert (tmp_path / "state" / "moa-graph" / "checkpoints.sqlite").is_file()

    chosen = tmp_path / "chosen" / "runs.sqlite"
    monkeypatch.setenv("MOA_CHECKPOINTS", str(chosen))
    with pytest.raises(ConfigError, match="does not exist"):
        async with open_checkpointer(default_checkpoints()):
            pass
    assert not chosen.parent.exists()


# 6. The table ends in the state the run ended in, with a final newline.

CONFIG = MoAConfig(
    layers=[[{"model": "openai:p", "name": "p1"}, {"model": "openai:p", "name": "p2"}]],
    aggregator={"model": "openai:agg", "name": "agg"},
)
FINISHED = {"latency_s": 0.5, "input_tokens": 3, "output_tokens": 4}


def first_layer(index: int, agent: str, **fields: Any) -> Proposal:
    """A proposal of the first turn's first layer, by an agent of model ``openai:p``."""
    return Proposal(turn=1, layer=1, index=index, agent=agent, model="openai:p", **fields)


FINAL_STATE = {
    "messages": [HumanMessage("Q?"), AIMessage("answer")],
    "proposals": [
        first_layer(0, "p1", content="c", **FINISHED),
        first_layer(1, "p2", content="", latency_s=1.5, error="boom"),
    ],
}
FINAL_TABLE = [
    "layer  agent  model       status  latency  tokens in → out",
    "1      p1     openai:p    done    0.5s     3 → 4",
    "1      p2     openai:p    failed  1.5s",
    "agg    agg    openai:agg  done    0.5s     3 → 4",
]


def progress(event: str, agent: str, layer: int = 1, **fields: Any) -> Progress:
    return Progress({"event": event, "moa_layer": layer, "moa_agent": agent, **fields})


RECORDED: list[Event] = [
    Progress({"event": "layer_started", "moa_layer": 1, "moa_agents": ["p1", "p2"]}),
    progress("agent_started", "p1"),
    progress("agent_started", "p2"),
    progress("agent_finished", "p1", **FINISHED),
    progress("agent_failed", "p2", error="boom"),
    progress("aggregator_started", "agg", 2),
    Token("ans"),
    Token("wer"),
    progress("agent_finished", "agg", 2, **FINISHED),
    Finished(FINAL_STATE),
]


async def replay(events: list[Event], error: Exception | None = None) -> AsyncIterator[Event]:
    for event in events:
        yield event
        await asyncio.sleep(0)
    if error is not None:
        raise error


def show(events: AsyncIterator[Event], *, terminal: bool = False) -> tuple[str, str]:
    out = Console(file=io.StringIO())
    err = Console(file=io.StringIO(), width=100, force_terminal=terminal, color_system=None)
    asyncio.run(render_run(events, CONFIG, out=out, err=err))
    return out.file.getvalue(), err.file.getvalue()


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_recorded_run_ends_with_every_agent_done_or_failed() -> None:
    answer, table = show(replay(RECORDED))
    assert answer == "answer\n"
    assert table.endswith("\n")
    assert lines(table) == FINAL_TABLE


def test_on_a_terminal_the_last_table_is_the_final_one() -> None:
    answer, table = show(replay(RECORDED), terminal=True)
    assert answer == "answer\n"
    assert table.endswith("\n")
    assert lines(table.rsplit("\x1b[2K", 1)[1]) == FINAL_TABLE


def test_a_resumed_run_shows_the_agents_that_finished_before() -> None:
    # Resumed: the proposers answered before the run was stopped, so no events.
    events = [progress("aggregator_started", "agg", 2), Finished(FINAL_STATE)]
    answer, table = show(replay(events))
    assert answer == "answer\n"
    assert lines(table)[:3] == FINAL_TABLE[:3]
    assert lines(table)[3] == "agg    agg    openai:agg  done"


def test_a_run_that_fails_shows_its_running_agents_failed() -> None:
    events = RECORDED[:6]
    table = io.StringIO()
    err = Console(file=table, width=100)
    with pytest.raises(ModelCallError):
        asyncio.run(
            render_run(
                replay(events, ModelCallError("down")),
                CONFIG,
                out=Console(file=io.StringIO()),
                err=err,
            )
        )
    assert lines(table.getvalue())[3] == "agg    agg    openai:agg  failed"
    assert table.getvalue().endswith("\n")


@pytest.fixture
def config_file(tmp_path: Path, openai_server) -> Path:
    agent = {"base_url": openai_server.url}
    config = {
        "layers": [[{"model": "openai:alpha", **agent}, {"model": "openai:beta", **agent}]],
        "aggregator": {"model": "openai:omega", **agent},
    }
    return write(tmp_path, "moa.yaml", yaml.safe_dump(config))


def test_cli_table_ends_done_with_a_newline(config_file: Path) -> None:
    result = moa("ask", "Hi", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "omega says: Hi\n"
    assert result.stderr.endswith("\n")
    assert "running" not in result.stderr
    shown = lines(result.stderr)
    assert shown[0] == "layer  agent  model         status  latency  tokens in → out"
    for line, (label, agent) in zip(
        shown[1:], [("1", "alpha"), ("1", "beta"), ("agg", "omega")], strict=True
    ):
        assert re.fullmatch(rf"{label} +{agent} +openai:{agent} +done +\d+\.\ds +\d+ → \d+", line)


def test_json_output_is_not_changed(config_file: Path) -> None:
    result = moa("ask", "Hi", "--config", str(config_file), "--json")
    assert json.loads(result.stdout)["answer"] == "omega says: Hi"
    assert result.stderr == ""
