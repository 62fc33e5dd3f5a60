"""Configuration of a Mixture-of-Agents: its agents, layers and sampling defaults."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moa_graph.aggregation import Aggregation
from moa_graph.errors import ConfigError
from moa_graph.prompts import AGGREGATE_PROMPT

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


def _named(agents: list[AgentSpec], where: str) -> list[AgentSpec]:
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


class MoAConfig(BaseModel):
    """A Mixture-of-Agents: proposer layers and one aggregator.

    Attributes:
        layers: Proposer layers, each a non-empty list of agents. Layer 1 answers the
            conversation; every later layer also sees the previous layer's responses.
        aggregator: The agent that synthesizes the last layer's responses.
        temperature: Default sampling temperature of every agent.
        max_tokens: Default completion budget of every agent.
        seed: Base sampling seed; agent ``i`` of a layer gets ``seed + i`` so that
            repeated samples of one model still differ.
        aggregate_prompt: The text put before the references.
        aggregation: How the aggregator combines the proposals: ``synthesize`` (the
            paper's), ``rank``, ``vote``, ``vote-hint``, ``consensus`` or ``auto``; see
            :mod:`moa_graph.aggregation`.
        check_code: Let ``consensus`` and ``auto`` run proposed code against the
            doctest examples of the prompt to choose between proposals (in a confined
            process: no network, time and memory limits; see :mod:`moa_graph.execution`).
        name: The preset's name, if the config came from one (shown in traces).
        description: One line describing the config.
        timeout_s: Seconds one attempt of a model call may take in all, however
            lively its stream (high enough for a slow model on a busy laptop).
        first_token_timeout_s: Seconds an attempt may wait for its first token
            (the prompt is read first: long prompts on a CPU take minutes).
        idle_timeout_s: Seconds an attempt may go between two tokens; a stream that
            stalls longer is cut and retried, a slow but live one never is.
        max_retries: Retries of a transient failure (429, 5xx, timeout, dropped
            connection, garbled or empty reply), with exponential backoff and jitter.
        backoff_s: First backoff; it doubles per retry, up to ``max_backoff_s``.
        max_backoff_s: Longest backoff between two attempts.
        max_retry_after_s: Longest ``Retry-After`` honoured; a longer one fails the
            call at once.
        min_proposals: Agents of a layer that must answer for the run to go on.
        layer_deadline_s: When set, a layer goes on after this many seconds with
            the responses it has (still subject to ``min_proposals``).
        aggregator_fallbacks: Agents tried in order when the aggregator fails.
        rate_limits: Requests per second per provider (e.g. ``{"together": 5}``),
            shared by every agent of that provider in the process.
    """

    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, frozen=True, allow_inf_nan=False
    )

    layers: list[list[AgentSpec]] = Field(min_length=1)
    aggregator: AgentSpec
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1)
    seed: int | None = None
    aggregate_prompt: str = AGGREGATE_PROMPT
    aggregation: Aggregation = "synthesize"
    check_code: bool = False
    name: str | None = None
    description: str = ""
    timeout_s: float = Field(default=1800.0, gt=0)
    first_token_timeout_s: float = Field(default=600.0, gt=0)
    idle_timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)
    max_retry_after_s: float = Field(default=60.0, ge=0)
    min_proposals: int = Field(default=1, ge=1)
    layer_deadline_s: float | None = Field(default=None, gt=0)
    aggregator_fallbacks: list[AgentSpec] = Field(default_factory=list)
    rate_limits: dict[str, float] = Field(default_factory=dict)

    @field_validator("layers")
    @classmethod
    def _check_layers(cls, layers: list[list[AgentSpec]]) -> list[list[AgentSpec]]:
        for number, layer in enumerate(layers, 1):
            if not layer:
                raise ValueError(f"layer {number} has no agents")
        return [_named(layer, f"layer {n}") for n, layer in enumerate(layers, 1)]

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, rate_limits: dict[str, float]) -> dict[str, float]:
        for provider, rate in rate_limits.items():
            if provider not in KNOWN_PROVIDERS:
                raise ValueError(f"unknown provider '{provider}' in rate_limits")
            if rate <= 0:
                raise ValueError(f"rate limit of '{provider}' must be above 0, not {rate}")
        return rate_limits

    @model_validator(mode="after")
    def _check_min_proposals(self) -> MoAConfig:
        for number, layer in enumerate(self.layers, 1):
            if len(layer) < self.min_proposals:
                raise ValueError(
                    f"min_proposals is {self.min_proposals} but layer {number} "
                    f"has only {len(layer)} agents"
                )
        return self

    @field_validator("aggregator_fallbacks")
    @classmethod
    def _name_fallbacks(cls, fallbacks: list[AgentSpec]) -> list[AgentSpec]:
        return _named(fallbacks, "aggregator_fallbacks")

    @field_validator("aggregator")
    @classmethod
    def _name_aggregator(cls, aggregator: AgentSpec) -> AgentSpec:
        return _named([aggregator], "the aggregator")[0]

    def sampling(self, agent: AgentSpec, index: int = 0) -> dict[str, Any]:
        """Return the temperature, max_tokens and seed that ``agent`` runs with.

        Args:
            agent: One of this config's agents.
            index: The agent's position in its layer, which offsets the seed.
        """
        seed = agent.seed
        if seed is None and self.seed is not None:
            seed = self.seed + index
        return {
            "temperature": self.temperature if agent.temperature is None else agent.temperature,
            "max_tokens": agent.max_tokens or self.max_tokens,
            "seed": seed,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain data, as a YAML or TOML file holds it."""
        return self.model_dump(mode="json", exclude_defaults=True)


def describe_validation_error(error: ValidationError) -> str:
    """Return a one-line description of a pydantic error, naming the field."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    more = error.error_count() - 1
    suffix = f" (and {more} more)" if more else ""
    return f"{location}: {message}{suffix}" if location else f"{message}{suffix}"


def config_from_data(data: Mapping[str, Any], *, source: str = "config") -> MoAConfig:
    """Validate plain data as a :class:`MoAConfig`.

    Args:
        data: The config as loaded from a file or preset.
        source: Where the data came from, named in errors.

    Raises:
        ConfigError: The data is not a valid config.
    """
    try:
        return MoAConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"invalid {source}: {_describe_config_error(error)}") from None


def _describe_config_error(error: ValidationError) -> str:
    """Return every problem of a config on one line, each naming its field.

    Missing fields read ``field required``; unknown ones ``unknown field``, with the
    closest known field's name when one is close.
    """
    problems: list[str] = []
    for item in error.errors():
        location = item["loc"]
        where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in location)
        if item["type"] == "missing":
            message = "field required"
        elif item["type"] == "extra_forbidden":
            message = "unknown field" + _did_you_mean(location)
        else:
            message = item["msg"].removeprefix("Value error, ")
        problem = f"{where}: {message}" if where else message
        if problem not in problems:
            problems.append(problem)
    return "; ".join(problems)


def _did_you_mean(location: tuple[int | str, ...]) -> str:
    """Return `` (did you mean 'x'?)`` for an unknown field close to a known one."""
    # Unknown fields are refused in the config itself or in one of its agents.
    fields = MoAConfig.model_fields if len(location) == 1 else AgentSpec.model_fields
    close = difflib.get_close_matches(str(location[-1]), list(fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
