"""Model resolution: from an :class:`AgentSpec` to a ready LangChain chat model.

Clients are cached process-wide, so every node, run and graph that uses the same
model with the same settings shares one client and its HTTP connection pool.
"""

from __future__ import annotations

import json
import os
from typing import Any

from langchain_core.language_models import BaseChatModel

from moa_graph.config import AgentSpec
from moa_graph.errors import ConfigError, MissingAPIKeyError

API_KEY_ENV = {
    "anthropic": "ANTHROPIC_API_KEY",
    "cohere": "COHERE_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "fireworks": "FIREWORKS_API_KEY",
    "google_genai": "GOOGLE_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistralai": "MISTRAL_API_KEY",
    "openai": "OPENAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "perplexity": "PPLX_API_KEY",
    "together": "TOGETHER_API_KEY",
    "xai": "XAI_API_KEY",
}
"""The environment variable each hosted provider reads its API key from."""

_STREAM_USAGE_PROVIDERS = frozenset({"openai", "together", "azure_openai"})
"""Providers built on LangChain's OpenAI client, which reports token usage while
streaming only when asked; a MoA streams every call when its caller streams."""

_PLACEHOLDER_KEY = "not-needed"
_clients: dict[str, BaseChatModel] = {}


def resolve_model(
    agent: AgentSpec,
    *,
    temperature: float,
    max_tokens: int,
    seed: int | None = None,
    timeout_s: float | None = None,
) -> BaseChatModel:
    """Return the chat model an agent calls.

    A model instance is returned as is. A model string is built once per distinct
    setting and cached. With ``base_url`` and no ``api_key_env``, no provider key is
    sent: a self-hosted endpoint must never receive the user's OpenAI key.

    Args:
        agent: The agent.
        temperature: Sampling temperature.
        max_tokens: Completion budget.
        seed: Sampling seed, passed only when set.
        timeout_s: Request timeout of OpenAI-compatible clients. Their own retries
            are turned off: :mod:`moa_graph.reliability` retries every provider alike.

    Raises:
        MissingAPIKeyError: The provider's API key is not set; names the variable.
        ConfigError: The provider's integration package is not installed.
    """
    if isinstance(agent.model, BaseChatModel):
        return agent.model
    provider = agent.model.partition(":")[0]
    kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
    if seed is not None:
        kwargs["seed"] = seed
    if provider in _STREAM_USAGE_PROVIDERS:
        kwargs["stream_usage"] = True
        kwargs["max_retries"] = 0
        if timeout_s is not None:
            kwargs["timeout"] = timeout_s
    if agent.base_url:
        kwargs["base_url"] = agent.base_url
    default_env = None if agent.base_url else API_KEY_ENV.get(provider)
    key_env = agent.api_key_env or default_env
    if key_env:
        if not os.environ.get(key_env):
            raise MissingAPIKeyError(
                f"model '{agent.model}' needs an API key: set the environment variable {key_env}"
            )
        # The key is read from the environment by name when the client is built,
        # so it never enters the cache key, the config or the graph state.
        kwargs["api_key_env"] = key_env
    elif agent.base_url:
        kwargs["api_key"] = _PLACEHOLDER_KEY
    kwargs.update(agent.params)
    key = json.dumps([agent.model, kwargs], sort_keys=True, default=repr)
    if key not in _clients:
        _clients[key] = _build_model(agent.model, kwargs)
    return _clients[key]


def _build_model(model: str, settings: dict[str, Any]) -> BaseChatModel:
    kwargs = dict(settings)
    if key_env := kwargs.pop("api_key_env", None):
        kwargs["api_key"] = os.environ[key_env]
    provider, _, model_id = model.partition(":")
    if provider == "local":
        from moa_graph import local

        return local.chat_model(model_id, **kwargs)
    from langchain.chat_models import init_chat_model

    try:
        chat_model: BaseChatModel = init_chat_model(model_id, model_provider=provider, **kwargs)
    except ImportError as error:
        raise ConfigError(f"provider '{provider}' needs its LangChain package: {error}") from None
    return chat_model


def clear_model_cache() -> None:
    """Forget every cached client (for tests, or after the environment changed)."""
    _clients.clear()
