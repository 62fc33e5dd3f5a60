"""Call settings nested under ``calls``: the flat form still loads, plans are unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from moa_graph import AgentSpec, ConfigError, MoAConfig, list_presets, load_config, save_config
from moa_graph.calls.call import CallPolicy, rate_limiter
from moa_graph.config.call_settings import CallSettings
from moa_graph.config.model import config_from_data
from moa_graph.config.presets import load_preset
from moa_graph.graph.planner import Planner, call_policy

ROOT = Path(__file__).resolve().parents[1]
STUDY_FILES = sorted((ROOT / "docs/evaluation/local-study").glob("*.yaml")) + sorted(
    (ROOT / "docs/evaluation/local-study/bfcl").glob("*.yaml")
)

BASE: dict[str, Any] = {
    "layers": [["openai:a", {"model": "openai:b", "timeout_s": 7, "max_retries": 0}]],
    "aggregator": "together:agg",
}
SETTINGS: dict[str, Any] = {
    "timeout_s": 90,
    "first_token_timeout_s": 30,
    "idle_timeout_s": 5,
    "max_retries": 4,
    "backoff_s": 0.5,
    "max_backoff_s": 8,
    "max_retry_after_s": 20,
    "min_proposals": 2,
    "layer_deadline_s": 45,
    "aggregator_fallbacks": ["openai:spare"],
    "rate_limits": {"together": 5},
}


def test_every_call_setting_is_nested() -> None:
    assert set(SETTINGS) == set(CallSettings.model_fields)
    assert not set(CallSettings.model_fields) & set(MoAConfig.model_fields)


def test_flat_and_nested_give_equal_configs() -> None:
    flat = config_from_data({**BASE, **SETTINGS})
    nested = config_from_data({**BASE, "calls": SETTINGS})
    assert flat == nested
    assert flat.calls.timeout_s == 90.0
    assert [a.name for a in flat.calls.aggregator_fallbacks] == ["spare"]
    assert MoAConfig(**BASE, **SETTINGS) == nested
    assert MoAConfig(**BASE, calls=CallSettings(**SETTINGS)) == nested


def test_flat_and_nested_keys_may_be_mixed() -> None:
    half = list(SETTINGS)[::2]
    mixed = {
        **BASE,
        **{k: SETTINGS[k] for k in half},
        "calls": {k: v for k, v in SETTINGS.items() if k not in half},
    }
    assert config_from_data(mixed) == config_from_data({**BASE, "calls": SETTINGS})
    own = CallSettings(max_retries=1)  # an instance, with a flat key beside it
    assert MoAConfig(**BASE, calls=own, timeout_s=3).calls == CallSettings(
        max_retries=1, timeout_s=3
    )


@pytest.mark.parametrize("key", list(SETTINGS))
def test_a_key_given_both_ways_is_one_line(key: str) -> None:
    data = {**BASE, key: SETTINGS[key], "calls": {key: SETTINGS[key]}}
    with pytest.raises(ConfigError) as error:
        config_from_data(data)
    assert str(error.value) == (
        f"invalid config: {key} is given both at the top level and under calls: keep one"
    )


def test_an_instance_and_a_flat_key_conflict_only_on_what_the_instance_set() -> None:
    with pytest.raises(ValueError, match="max_retries is given both"):
        MoAConfig(**BASE, calls=CallSettings(max_retries=1), max_retries=2)


def test_errors_name_a_setting_as_it_was_given(tmp_path: Path) -> None:
    cases = {
        "backoff_s: -1\n": "backoff_s: Input should be greater than or equal to 0",
        "calls: {backoff_s: -1}\n": "calls.backoff_s: Input should be greater than or equal to 0",
        "rate_limits: {nope: 1}\n": "rate_limits: unknown provider 'nope' in rate_limits",
        "calls:\n  rate_limits: {openai: 0}\n": (
            "calls.rate_limits: rate limit of 'openai' must be above 0, not 0.0"
        ),
        "timout_s: 1\n": "timout_s: unknown field (did you mean 'timeout_s'?)",
        "calls: {idle_timeout: 1}\n": (
            "calls.idle_timeout: unknown field (did you mean 'idle_timeout_s'?)"
        ),
        "aggregator_fallbacks: [{model: openai:x, temprature: 0}]\n": (
            "aggregator_fallbacks.0.temprature: unknown field (did you mean 'temperature'?)"
        ),
        "calls: 5\ntimeout_s: 3\n": (
            "calls: Input should be a valid dictionary or instance of CallSettings"
        ),
    }
    for number, (text, says) in enumerate(cases.items()):
        path = tmp_path / f"moa{number}.yaml"
        path.write_text("layers: [[openai:a]]\naggregator: openai:a\n" + text)
        with pytest.raises(ConfigError) as error:
            load_config(path)
        assert str(error.value) == f"invalid config file {path}: {says}"


def test_min_proposals_is_checked_against_the_layers_either_way() -> None:
    for data in ({**BASE, "min_proposals": 3}, {**BASE, "calls": {"min_proposals": 3}}):
        with pytest.raises(ConfigError, match="min_proposals is 3 but layer 1 has only 2 agents"):
            config_from_data(data)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_saving_writes_the_nested_form_and_loads_back(tmp_path: Path, suffix: str) -> None:
    flat_file = tmp_path / "flat.yaml"
    flat_file.write_text(yaml.safe_dump({**BASE, **SETTINGS}))
    config = load_config(flat_file)
    saved = tmp_path / f"moa{suffix}"
    save_config(config, saved)
    assert load_config(saved) == config
    data = config.to_dict()
    assert not set(SETTINGS) & set(data)
    assert data["calls"]["rate_limits"] == {"together": 5.0}
    assert "calls" not in config_from_data(BASE).to_dict()  # defaults are left out
    if suffix == ".yaml":
        assert "\ncalls:\n" in saved.read_text()


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_loads_with_flat_or_nested_overrides(name: str) -> None:
    preset = load_preset(name)
    assert preset.calls == CallSettings()  # no preset sets a call setting
    flat = load_preset(name, timeout_s=90, rate_limits={"together": 5})
    nested = load_preset(name, calls={"timeout_s": 90, "rate_limits": {"together": 5}})
    assert flat == nested
    assert flat.calls.timeout_s == 90
    assert config_from_data(flat.to_dict()) == flat


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.name)
def test_the_study_configs_still_load(path: Path) -> None:
    assert load_config(path).calls == CallSettings()


def old_policy(config: MoAConfig, agent: AgentSpec) -> dict[str, Any]:
    """The call policy as the planner built it before ``calls``, field by field."""
    settings = config.calls
    rate = settings.rate_limits.get(agent.provider or "")
    return {
        "timeout_s": agent.timeout_s or settings.timeout_s,
        "first_token_s": settings.first_token_timeout_s,
        "idle_s": settings.idle_timeout_s,
        "max_retries": settings.max_retries if agent.max_retries is None else agent.max_retries,
        "backoff_s": settings.backoff_s,
        "max_backoff_s": settings.max_backoff_s,
        "max_retry_after_s": settings.max_retry_after_s,
        "rate_limiter": rate_limiter(agent.provider or "", rate) if rate else None,
    }


def fields(policy: CallPolicy) -> dict[str, Any]:
    """A policy's fields under their names before ``calls``."""
    settings = policy.settings
    return {
        "timeout_s": settings.timeout_s,
        "first_token_s": settings.first_token_timeout_s,
        "idle_s": settings.idle_timeout_s,
        "max_retries": settings.max_retries,
        "backoff_s": settings.backoff_s,
        "max_backoff_s": settings.max_backoff_s,
        "max_retry_after_s": settings.max_retry_after_s,
        "rate_limiter": policy.rate_limiter,
    }


def new_policy(config: MoAConfig, agent: AgentSpec) -> dict[str, Any]:
    return fields(call_policy(config.calls, agent))


def agents_of(config: MoAConfig) -> list[AgentSpec]:
    return [
        *(a for layer in config.layers for a in layer),
        config.aggregator,
        *config.calls.aggregator_fallbacks,
    ]


@pytest.mark.parametrize("name", list_presets())
def test_the_call_policy_of_every_preset_agent_is_unchanged(name: str) -> None:
    preset = load_preset(name)
    own = {"timeout_s": 11.0, "max_retries": 0}
    varied = load_preset(
        name,
        **SETTINGS,
        layers=[[a.model_copy(update=own) for a in layer] for layer in preset.layers],
    )
    for config in (preset, varied):
        for agent in agents_of(config):
            assert new_policy(config, agent) == old_policy(config, agent), agent.name
    layer_agent = varied.layers[0][0]
    assert new_policy(varied, layer_agent)["timeout_s"] == 11.0
    assert new_policy(varied, varied.aggregator)["timeout_s"] == 90.0
    limited = new_policy(varied, varied.aggregator)["rate_limiter"] is not None
    assert limited == (varied.aggregator.provider == "together")


def test_the_planner_gives_each_candidate_its_policy(fake_model: Any) -> None:
    layer = [
        fake_model("p1"),
        AgentSpec(model=fake_model("p2"), timeout_s=4, max_retries=0),
    ]
    config = MoAConfig(
        layers=[layer],
        aggregator=fake_model("agg"),
        aggregator_fallbacks=[fake_model("fb")],
        **{k: v for k, v in SETTINGS.items() if k != "aggregator_fallbacks"},
    )
    plan = Planner(config).plan()
    agents = [*plan.layers[0], plan.aggregator]
    candidates = [c for agent in agents for c in agent.candidates]
    assert [c.spec.name for c in candidates] == ["p1", "p2", "agg", "fb"]
    for candidate in candidates:
        assert fields(candidate.policy) == old_policy(config, candidate.spec)
    assert [c.policy.settings.timeout_s for c in candidates] == [90.0, 4.0, 90.0, 90.0]
    assert [c.policy.settings.max_retries for c in candidates] == [4, 0, 4, 4]
    assert plan.layers[0][0].deadline_s == 45.0
    assert plan.layers[0][0].min_proposals == 2
