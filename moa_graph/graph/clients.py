"""Model resolution: from an :class:`AgentSpec` to a ready LangChain chat model.

Clients are cached process-wide, so every node, run and graph that uses the same
model with the same settings shares one client and its HTTP connection pool; the
cache keeps the 64 most recently used settings.

A ``local:`` client is built without its server: building a graph reads no weights.
A run starts the servers of its plan first (:func:`start_local_models`), so missing
or corrupted weights fail it at once, in one line, before any model is called.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from typing import Any

from langchain_core.language_models import BaseChatModel

from moa_graph.calls import secrets
from moa_graph.calls.chunk_dicts import with_dict_chunks
from moa_graph.calls.http_pool import async_http_client
from moa_graph.config.model import AgentSpec
from moa_graph.errors import ConfigError, MissingAPIKeyError
from moa_graph.graph.plan import MoAPlan

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

secrets.register(*API_KEY_ENV.values())

_STREAM_USAGE_PROVIDERS = frozenset({"openai", "together", "azure_openai"})
"""Providers built on LangChain's OpenAI client, which reports token usage while
streaming only when asked; a MoA streams every call when its caller streams."""

_OPENAI_CLIENTS = _STREAM_USAGE_PROVIDERS | {"local"}
"""Providers whose clients are LangChain's ``ChatOpenAI`` (the local runtime's too)."""

_PLACEHOLDER_KEY = "not-needed"
_MAX_CLIENTS = 64  # per-request sampling makes new settings; keep the recent ones
_clients: OrderedDict[str, BaseChatModel] = OrderedDict()
_clients_lock = threading.Lock()


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
        timeout_s: Read timeout of OpenAI-compatible clients: the longest wait for
            the next bytes of a reply. Their own retries are turned off:
            :mod:`moa_graph.calls.call` retries every provider alike.

    Raises:
        MissingAPIKeyError: The provider's API key is not set; names the variable.
        ConfigError: The provider's integration package is not installed.
    """
    if isinstance(agent.model, BaseChatModel):
        return agent.model
    kwargs = _settings(agent, temperature, max_tokens, seed, timeout_s)
    key = json.dumps([agent.model, kwargs], sort_keys=True, default=repr)
    with _clients_lock:
        if key in _clients:
            _clients.move_to_end(key)
            return _clients[key]
    client = _build_model(agent.model, kwargs)
    with _clients_lock:
        _clients[key] = client
        while len(_clients) > _MAX_CLIENTS:
            _clients.popitem(last=False)
    return client


def _settings(
    agent: AgentSpec,
    temperature: float,
    max_tokens: int,
    seed: int | None,
    timeout_s: float | None,
) -> dict[str, Any]:
    """Return the client settings of an agent's model string (the key by name only)."""
    provider = str(agent.model).partition(":")[0]
    kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
    if seed is not None:
        kwargs["seed"] = seed
    if provider in _STREAM_USAGE_PROVIDERS:
        kwargs["stream_usage"] = True
    if provider in _OPENAI_CLIENTS:
        kwargs["max_retries"] = 0
    if provider in _OPENAI_CLIENTS and timeout_s is not None:
        kwargs["timeout"] = timeout_s
        # moa_graph.calls.call times every stream by its progress; a second,
        # fixed chunk timeout would cut slow first tokens short.
        kwargs["stream_chunk_timeout"] = None
    if agent.base_url:
        kwargs["base_url"] = agent.base_url
    default_env = None if agent.base_url else API_KEY_ENV.get(provider)
    key_env = agent.api_key_env or default_env
    if key_env:
        secrets.register(key_env)
        if not os.environ.get(key_env):
            raise MissingAPIKeyError(
                f"model '{agent.model}' needs an API key: set the environment variable {key_env}"
            )
        # The key is read from the environment by name when the client is built,
        # so it never enters the cache key, the config or the graph state.
        kwargs["api_key_env"] = key_env
    elif agent.base_url:
        kwargs["api_key"] = _PLACEHOLDER_KEY
    return {**kwargs, **agent.params}


def _build_model(model: str, settings: dict[str, Any]) -> BaseChatModel:
    kwargs = dict(settings)
    if key_env := kwargs.pop("api_key_env", None):
        kwargs["api_key"] = os.environ[key_env]
    provider, _, model_id = model.partition(":")
    if provider in _STREAM_USAGE_PROVIDERS and "http_async_client" not in kwargs:
        # The client outlives event loops (one per moa chat turn); its pool must not.
        kwargs["http_async_client"] = async_http_client()
    if provider == "local":
        from moa_graph import local

        return local.chat_model(model_id, start=False, **kwargs)
    from langchain.chat_models import init_chat_model

    try:
        chat_model: BaseChatModel = init_chat_model(model_id, model_provider=provider, **kwargs)
    except ImportError as error:
        raise ConfigError(f"provider '{provider}' needs its LangChain package: {error}") from None
    if "max_retries" in type(chat_model).model_fields and "max_retries" not in kwargs:
        # One retry layer per call, whatever the provider: moa_graph.calls.call's.
        # The client is built again, as many make their HTTP client when built.
        chat_model = init_chat_model(model_id, model_provider=provider, max_retries=0, **kwargs)
    # Its streamed chunks are read as dicts, which LangChain wants, not built as SDK
    # models that it dumps back: most of a streamed call's CPU (docs/performance.md).
    return with_dict_chunks(chat_model)


def start_local_models(plan: MoAPlan) -> None:
    """Start the servers of a plan's local models that do not run yet; cheap once they run.

    Raises:
        LocalModelError: A model's weights are missing or corrupted, or its server
            could not start; the message says why (and the command that installs them).
    """
    models = [c.model for a in plan.agents() for c in a.candidates if c.spec.provider == "local"]
    if not models:  # the runtime is not imported for runs that use none of it
        return
    from moa_graph.local.chat import LocalChatModel

    for model in models:
        if isinstance(model, LocalChatModel):
            model.start()


def clear_model_cache() -> None:
    """Forget every cached client (for tests, or after the environment changed)."""
    _clients.clear()
