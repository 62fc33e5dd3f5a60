"""The ``moa`` command, run as a real process against a loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def moa(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    environment.update(env or {}, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "moa_graph.cli.app", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


@pytest.fixture
def config_file(tmp_path: Path, openai_server) -> Path:
    path = tmp_path / "moa.yaml"
    agent = {"base_url": openai_server.url}
    path.write_text(
        yaml.safe_dump(
            {
                "layers": [[{"model": "openai:alpha", **agent}, {"model": "openai:beta", **agent}]],
                "aggregator": {"model": "openai:omega", **agent},
            }
        )
    )
    return path


def test_ask_shows_progress_and_streams_the_answer(config_file: Path, openai_server) -> None:
    result = moa("ask", "What is MoA?", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "omega says: What is MoA?"
    for agent in ("alpha", "beta", "omega"):
        assert agent in result.stderr  # the progress table
    assert "done" in result.stderr
    assert openai_server.calls == {"alpha": 1, "beta": 1, "omega": 1}
    # The aggregator was streamed; proposers and aggregator got the paper's prompt.
    aggregator_request = next(r for r in openai_server.requests if r["model"] == "omega")
    assert aggregator_request["stream"] is True
    assert (
        "1. alpha says: What is MoA?\n2. beta says: What is MoA?"
        in aggregator_request["messages"][0]["content"]
    )


def test_ask_json(config_file: Path) -> None:
    result = moa("ask", "Hi", "--config", str(config_file), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["answer"] == "omega says: Hi"
    assert [p["agent"] for p in data["proposals"]] == ["alpha", "beta"]
    assert data["proposals"][0]["content"] == "alpha says: Hi"
    assert data["usage"]["total_tokens"] > 0
    assert (
        data["usage"]["total_tokens"]
        == data["usage"]["input_tokens"] + data["usage"]["output_tokens"]
    )


def test_ask_show_proposals(config_file: Path) -> None:
    result = moa("ask", "Hi", "--config", str(config_file), "--show-proposals")
    assert result.returncode == 0, result.stderr
    assert "layer 1 · alpha" in result.stderr and "beta says: Hi" in result.stderr
    assert "the aggregator wrote the answer from the last layer's proposals" in result.stderr


def test_ask_reads_stdin(config_file: Path) -> None:
    result = moa("ask", "-", "--config", str(config_file), stdin="from stdin")
    assert result.stdout.strip() == "omega says: from stdin"


def test_chat_keeps_the_conversation(config_file: Path, openai_server) -> None:
    result = moa("chat", "--config", str(config_file), stdin="first\nsecond\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["omega says: first", "omega says: second"]
    last = [r for r in openai_server.requests if r["model"] == "alpha"][-1]
    assert [m["content"] for m in last["messages"]] == ["first", "omega says: first", "second"]


def test_chat_reset(config_file: Path, openai_server) -> None:
    moa("chat", "--config", str(config_file), stdin="first\n/reset\nsecond\n")
    last = [r for r in openai_server.requests if r["model"] == "alpha"][-1]
    assert [m["content"] for m in last["messages"]] == ["second"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "  ", "--preset", "together-moa"], "error: the prompt is empty"),
        (["ask", "hi", "--preset", "nope"], "error: unknown preset 'nope'"),
        (
            ["ask", "hi", "--preset", "together-moa"],
            "error: model 'together:Qwen/Qwen1.5-110B-Chat' needs an API key: "
            "set the environment variable TOGETHER_API_KEY",
        ),
        (["ask", "hi", "--config", "missing.yaml"], "error: cannot read config file missing.yaml"),
        (
            ["ask", "hi", "--preset", "together-moa", "--config", "x.yaml"],
            "error: give --preset or --config, not both",
        ),
        (["presets", "show", "nope"], "error: unknown preset 'nope'"),
    ],
)
def test_errors_are_one_line_without_traceback(args: list[str], message: str) -> None:
    result = moa(*args)
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback() -> None:
    result = moa("--debug", "ask", "hi", "--preset", "nope")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_malformed_config_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("layers: [[openai:a]]\naggregator: openai:a\ntemperature: 7\n")
    result = moa("ask", "hi", "--config", str(path))
    assert result.returncode == 1
    assert "bad.yaml: temperature: Input should be less than or equal to 2" in result.stderr


def test_presets_list_and_show() -> None:
    listing = moa("presets")
    assert listing.returncode == 0
    for name in ("together-moa", "together-moa-lite", "together-moa-gpt4o", "together-moa-2025"):
        assert name in listing.stdout
    shown = moa("presets", "show", "together-moa-gpt4o")
    data = yaml.safe_load(shown.stdout)
    assert data["aggregator"]["model"] == "openai:gpt-4o"
    assert len(data["layers"]) == 2
