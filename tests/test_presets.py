from __future__ import annotations

import pytest

from moa_graph import ConfigError, MoAConfig, create_moa, list_presets, load_preset
from moa_graph.graph.build import AGGREGATOR_NODE, proposer_node

PAPER_PROPOSERS = [
    "together:Qwen/Qwen1.5-110B-Chat",
    "together:Qwen/Qwen1.5-72B-Chat",
    "together:microsoft/WizardLM-2-8x22B",
    "together:meta-llama/Llama-3-70b-chat-hf",
    "together:mistralai/Mixtral-8x22B-Instruct-v0.1",
    "together:databricks/dbrx-instruct",
]


def models(config: MoAConfig) -> list[list[str]]:
    return [[str(a.model) for a in layer] for layer in config.layers]


def test_paper_presets() -> None:
    moa = load_preset("together-moa")
    assert models(moa) == [PAPER_PROPOSERS, PAPER_PROPOSERS]
    assert moa.aggregator.model == "together:Qwen/Qwen1.5-110B-Chat"
    assert (moa.temperature, moa.max_tokens, moa.name) == (0.7, 2048, "together-moa")

    lite = load_preset("together-moa-lite")
    assert models(lite) == [PAPER_PROPOSERS]
    assert lite.aggregator.model == "together:Qwen/Qwen1.5-72B-Chat"

    gpt4o = load_preset("together-moa-gpt4o")
    assert models(gpt4o) == models(moa)
    assert gpt4o.aggregator.model == "openai:gpt-4o"
    assert gpt4o.max_tokens == 2048


def test_reference_repo_defaults() -> None:
    config = load_preset("together-moa-2025")
    assert models(config) == [
        [
            "together:meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "together:Qwen/Qwen2.5-72B-Instruct-Turbo",
            "together:Qwen/Qwen2.5-Coder-32B-Instruct",
            "together:microsoft/WizardLM-2-8x22B",
        ]
    ]
    assert config.aggregator.model == "together:Qwen/Qwen2.5-72B-Instruct-Turbo"
    assert (config.temperature, config.max_tokens) == (0.7, 512)


def test_overrides_replace_any_field() -> None:
    config = load_preset("together-moa-2025", max_tokens=64, aggregator="openai:gpt-4o-mini")
    assert config.max_tokens == 64
    assert config.aggregator.model == "openai:gpt-4o-mini"
    with pytest.raises(ConfigError, match="preset 'together-moa-2025': temperature"):
        load_preset("together-moa-2025", temperature=9)


def test_unknown_preset_lists_known() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'nope' .*together-moa-lite"):
        load_preset("nope")


@pytest.mark.parametrize("name", [n for n in list_presets() if n.startswith("together")])
def test_graph_from_every_preset_answers_with_every_agent(name: str, fake_model) -> None:
    """Build each preset with fake models standing in for its models, and run it."""
    preset = load_preset(name)
    swap = {str(a.model): fake_model(str(a.model)) for layer in preset.layers for a in layer}
    swap.setdefault(str(preset.aggregator.model), fake_model(str(preset.aggregator.model)))
    config = preset.model_copy(
        update={
            "layers": [
                [a.model_copy(update={"model": swap[str(a.model)]}) for a in layer]
                for layer in preset.layers
            ],
            "aggregator": preset.aggregator.model_copy(
                update={"model": swap[str(preset.aggregator.model)]}
            ),
        }
    )
    builder = create_moa(config)
    expected_nodes = {
        proposer_node(n, a.name or "") for n, layer in enumerate(preset.layers, 1) for a in layer
    }
    assert set(builder.nodes) == expected_nodes | {AGGREGATOR_NODE}

    out = builder.compile().invoke({"messages": [("user", "What is MoA?")]})
    assert out["messages"][-1].content == f"{preset.aggregator.model} answers: What is MoA?"
    assert [(p.layer, p.agent) for p in out["proposals"]] == [
        (n, a.name) for n, layer in enumerate(preset.layers, 1) for a in layer
    ]


def test_presets_need_their_api_key() -> None:
    from moa_graph import MissingAPIKeyError

    with pytest.raises(MissingAPIKeyError, match="TOGETHER_API_KEY"):
        create_moa("together-moa")
