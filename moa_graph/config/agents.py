"""Agents: one model and how it is sampled, as a config names it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KNOWN_PROVIDERS = frozenset(
    {
        "anthropic",
        "azure_openai",
        "bedrock",
        "bedrock_converse",
        "cohere",
        "deepseek",
        "fireworks",
        "google_genai",
        "google_vertexai",
        "groq",
        "huggingface",
        "local",
        "mistralai",
        "nvidia",
        "ollama",
        "openai",
        "openrouter",
        "perplexity",
        "together",
        "xai",
    }
)
"""Providers a ``"provider:model"`` string may name (``local`` is moa-graph's own)."""

_RESERVED_IN_NAMES = re.compile(r"[|:\s]+")


class AgentSpec(BaseModel):
    """One agent: a model and how it is sampled.

    A bare model string or chat model instance is accepted wherever an agent is.

    Attributes:
        model: A ``"provider:model"`` string, or any LangChain chat model instance
            (used as is: the sampling fields below then do not apply).
        name: Unique name within its layer; derived from the model when absent.
        temperature: Overrides the config's temperature.
        max_tokens: Overrides the config's ``max_tokens``.
        system_prompt: The agent's own system prompt.
        base_url: An OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp server).
        api_key_env: Name of the environment variable holding the API key; the key
            itself never appears in a config.
        seed: Sampling seed, for providers that accept one.
        params: Further keyword arguments for the chat model's constructor.
        timeout_s: Seconds one attempt of a call may take; overrides the config's.
        max_retries: Retries of a transient failure; overrides the config's.
        context_window: Tokens the model takes, prompt and completion together;
            references are cut to fit it. Defaults to the model's own profile.
    """

    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, frozen=True, allow_inf_nan=False
    )

    model: str | BaseChatModel
    name: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    system_prompt: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    seed: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    context_window: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _accept_bare_model(cls, data: Any) -> Any:
        if isinstance(data, str | BaseChatModel):
            return {"model": data}
        return data

    @field_validator("model")
    @classmethod
    def _check_model(cls, model: str | BaseChatModel) -> str | BaseChatModel:
        if isinstance(model, str):
            provider, _, model_id = model.partition(":")
            if not model_id:
                raise ValueError(f"'{model}' is not of the form 'provider:model'")
            if provider not in KNOWN_PROVIDERS:
                known = ", ".join(sorted(KNOWN_PROVIDERS))
                raise ValueError(f"unknown provider '{provider}' (known: {known})")
        return model

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str | None) -> str | None:
        if name is not None and (not name or _RESERVED_IN_NAMES.search(name)):
            raise ValueError(f"agent name '{name}' is empty or has '|', ':' or spaces")
        return name

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url

    @property
    def provider(self) -> str | None:
        """The provider of a model string, or None for a model instance."""
        return self.model.partition(":")[0] if isinstance(self.model, str) else None

    @property
    def model_id(self) -> str:
        """A readable identifier of the model, for records and traces."""
        if isinstance(self.model, str):
            return self.model
        for attribute in ("model_name", "model"):
            value = getattr(self.model, attribute, None)
            if isinstance(value, str) and value:
                return value
        return type(self.model).__name__


def _default_name(agent: AgentSpec) -> str:
    model_id = agent.model_id.partition(":")[2] or agent.model_id
    return _RESERVED_IN_NAMES.sub("-", model_id.rsplit("/", 1)[-1])


def named(agents: list[AgentSpec], where: str) -> list[AgentSpec]:
    """Give every agent a name, suffixing derived names that repeat."""
    explicit = [a.name for a in agents if a.name]
    duplicates = sorted({n for n in explicit if explicit.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate agent names in {where}: {', '.join(duplicates)}")
    taken = set(explicit)
    named = []
    for agent in agents:
        if agent.name is None:
            base = _default_name(agent)
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base}-{n}"
            taken.add(name)
            agent = agent.model_copy(update={"name": name})
        named.append(agent)
    return named
