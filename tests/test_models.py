from __future__ import annotations

import pytest

from moa_graph import AgentSpec, ConfigError, MissingAPIKeyError, MoAConfig
from moa_graph.graph.clients import resolve_model
from moa_graph.graph.planner import Planner


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(MissingAPIKeyError, match="set the environment variable OPENAI_API_KEY"):
        resolve_model(AgentSpec(model="openai:gpt-4o"), temperature=0.7, max_tokens=10)


def test_custom_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = AgentSpec(model="openai:m", base_url="http://127.0.0.1:1/v1", api_key_env="MY_KEY")
    with pytest.raises(MissingAPIKeyError, match="MY_KEY"):
        resolve_model(agent, temperature=0.7, max_tokens=10)
    monkeypatch.setenv("MY_KEY", "sk-custom")
    model = resolve_model(agent, temperature=0.7, max_tokens=10)
    assert model.openai_api_key.get_secret_value() == "sk-custom"


def test_self_hosted_endpoint_never_gets_the_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    model = resolve_model(
        AgentSpec(model="openai:llama", base_url="http://127.0.0.1:1/v1"),
        temperature=0.2,
        max_tokens=7,
        seed=5,
    )
    assert model.openai_api_key.get_secret_value() != "sk-secret"
    assert (model.openai_api_base, model.temperature, model.max_tokens, model.seed) == (
        "http://127.0.0.1:1/v1",
        0.2,
        7,
        5,
    )


def test_one_client_per_model_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "tk")
    agent = AgentSpec(model="together:Qwen/Qwen1.5-72B-Chat")
    first = resolve_model(agent, temperature=0.7, max_tokens=10)
    assert resolve_model(agent, temperature=0.7, max_tokens=10) is first
    assert resolve_model(agent, temperature=0.0, max_tokens=10) is not first
    config = MoAConfig(layers=[[agent, agent], [agent]], aggregator=agent, max_tokens=10)
    plan = Planner(config).plan()
    models = {id(agent.candidates[0].model) for agent in plan.agents()}
    assert len(models) == 1


def test_unknown_integration_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "x")
    try:
        import langchain_anthropic  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="provider 'anthropic' needs its LangChain package"):
            resolve_model(AgentSpec(model="anthropic:claude"), temperature=0.7, max_tokens=10)
    else:
        pytest.skip("langchain-anthropic is installed")


def test_model_instances_are_used_as_they_are(fake_model) -> None:
    model = fake_model("x")
    assert resolve_model(AgentSpec(model=model), temperature=0.0, max_tokens=1) is model


def test_the_client_cache_keeps_only_recent_settings() -> None:
    from moa_graph.graph import clients as models

    agent = AgentSpec(model="openai:m", base_url="http://127.0.0.1:9/v1")
    first = resolve_model(agent, temperature=0.0, max_tokens=8)
    for step in range(1, 101):  # per-request sampling: a new setting every request
        resolve_model(agent, temperature=step / 100, max_tokens=8)
    assert len(models._clients) == 64
    assert resolve_model(agent, temperature=1.0, max_tokens=8) is resolve_model(
        agent, temperature=1.0, max_tokens=8
    )  # a recent setting is still shared
    assert resolve_model(agent, temperature=0.0, max_tokens=8) is not first  # an old one was let go


def test_every_provider_client_leaves_retries_to_moa_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider client with retries of its own gets none: one retry layer per call."""
    from langchain.chat_models import base
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    class RetryingChat(FakeListChatModel):
        max_retries: int = 6  # as e.g. ChatGoogleGenerativeAI has

    built: list[dict[str, object]] = []

    def init_chat_model(model: str, *, model_provider: str, **kwargs: object) -> RetryingChat:
        built.append(kwargs)
        return RetryingChat(responses=["hi"], **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(base, "init_chat_model", init_chat_model)
    monkeypatch.setenv("MISTRAL_API_KEY", "x")
    monkeypatch.setattr("langchain.chat_models.init_chat_model", init_chat_model)
    model = resolve_model(AgentSpec(model="mistralai:small"), temperature=0.1, max_tokens=5)
    assert model.max_retries == 0  # type: ignore[attr-defined]
    own = AgentSpec(model="mistralai:small", params={"max_retries": 4})
    assert resolve_model(own, temperature=0.1, max_tokens=5).max_retries == 4  # type: ignore[attr-defined]
