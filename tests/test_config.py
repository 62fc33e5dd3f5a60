from __future__ import annotations

from pathlib import Path

import pytest

from moa_graph import AgentSpec, ConfigError, MoAConfig, load_config, save_config
from moa_graph.config.model import config_from_data


def test_bare_strings_are_agents_and_names_are_derived_and_suffixed() -> None:
    config = MoAConfig(
        layers=[
            ["together:Qwen/Qwen1.5-72B-Chat", "together:Qwen/Qwen1.5-72B-Chat", "openai:gpt-4o"]
        ],
        aggregator="openai:gpt-4o",
    )
    assert [a.name for a in config.layers[0]] == [
        "Qwen1.5-72B-Chat",
        "Qwen1.5-72B-Chat-2",
        "gpt-4o",
    ]
    assert config.aggregator == AgentSpec(model="openai:gpt-4o", name="gpt-4o")
    assert (config.temperature, config.max_tokens) == (0.7, 512)


def test_derived_name_avoids_explicit_name() -> None:
    config = MoAConfig(
        layers=[[{"model": "openai:a", "name": "b"}, "openai:b"]], aggregator="openai:a"
    )
    assert [a.name for a in config.layers[0]] == ["b", "b-2"]


def test_colons_in_model_ids_do_not_reach_names() -> None:
    config = MoAConfig(layers=[["ollama:llama3.2:latest"]], aggregator="ollama:llama3.2:latest")
    assert config.layers[0][0].name == "llama3.2-latest"


def test_sampling_falls_back_to_config_and_offsets_seed() -> None:
    config = MoAConfig(
        layers=[["openai:a", {"model": "openai:b", "temperature": 0.1, "max_tokens": 9}]],
        aggregator="openai:a",
        seed=40,
    )
    first, second = config.layers[0]
    assert config.sampling(first, 0) == {"temperature": 0.7, "max_tokens": 512, "seed": 40}
    assert config.sampling(second, 1) == {"temperature": 0.1, "max_tokens": 9, "seed": 41}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"layers": [], "aggregator": "openai:a"}, "layers: List should have at least 1 item"),
        ({"layers": [[]], "aggregator": "openai:a"}, "layers: layer 1 has no agents"),
        ({"layers": [["openai:a"], []], "aggregator": "openai:a"}, "layer 2 has no agents"),
        (
            {
                "layers": [
                    [{"model": "openai:a", "name": "x"}, {"model": "openai:b", "name": "x"}]
                ],
                "aggregator": "openai:a",
            },
            "duplicate agent names in layer 1: x",
        ),
        (
            {"layers": [["openai:a"]], "aggregator": "openai:a", "temperature": 2.5},
            "temperature: Input should be less than or equal to 2",
        ),
        (
            {"layers": [["openai:a"]], "aggregator": "openai:a", "temperature": -0.1},
            "temperature: Input should be greater than or equal to 0",
        ),
        (
            {"layers": [[{"model": "openai:a", "temperature": 3}]], "aggregator": "openai:a"},
            "layers.0.0.temperature",
        ),
        (
            {"layers": [["openai:a"]], "aggregator": "openai:a", "max_tokens": 0},
            "max_tokens: Input should be greater than or equal to 1",
        ),
        (
            {"layers": [["nosuch:model"]], "aggregator": "openai:a"},
            "layers.0.0.model: unknown provider 'nosuch'",
        ),
        (
            {"layers": [["gpt-4o"]], "aggregator": "openai:a"},
            "'gpt-4o' is not of the form 'provider:model'",
        ),
        (
            {"layers": [["openai:a"]], "aggregator": "openai:a", "layer": 3},
            "layer: unknown field (did you mean 'layers'?)",
        ),
    ],
)
def test_invalid_configs_name_the_field(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid config: ") as error:
        config_from_data(data)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_round_trip(tmp_path: Path, suffix: str) -> None:
    config = MoAConfig(
        layers=[
            ["together:Qwen/Qwen1.5-72B-Chat", {"model": "openai:gpt-4o", "temperature": 0.2}],
            ["openai:gpt-4o"],
        ],
        aggregator={
            "model": "openai:gpt-4o",
            "system_prompt": "Be brief.",
            "base_url": "http://127.0.0.1:1/v1",
        },
        max_tokens=100,
        seed=3,
    )
    path = tmp_path / f"moa{suffix}"
    save_config(config, path)
    assert load_config(path) == config


def test_toml_config_file(tmp_path: Path) -> None:
    path = tmp_path / "moa.toml"
    path.write_text(
        'temperature = 0.3\naggregator = "openai:gpt-4o"\n'
        'layers = [["openai:gpt-4o", "together:Qwen/Qwen1.5-72B-Chat"]]\n'
    )
    config = load_config(path)
    assert config.temperature == 0.3
    assert [a.name for a in config.layers[0]] == ["gpt-4o", "Qwen1.5-72B-Chat"]


def test_invalid_field_in_file_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("layers: [[openai:a]]\naggregator: openai:a\nmax_tokens: 0\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: max_tokens: Input should be greater"):
        load_config(path)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.yaml", "layers: [[openai:a]\n", r"bad\.yaml is malformed"),
        ("bad.toml", "layers = [", r"bad\.toml is malformed"),
        ("bad.yaml", "- just a list\n", r"bad\.yaml must hold a mapping"),
        ("bad.ini", "x=1", r"must end in \.yaml"),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_model_instances_are_kept(fake_model) -> None:
    model = fake_model("mine")
    config = MoAConfig(layers=[[model]], aggregator=model)
    assert config.layers[0][0].model is model
    assert config.layers[0][0].name == "mine"
    with pytest.raises(ConfigError, match="cannot be saved"):
        save_config(config, "unused.yaml")
