"""Configuration of a Mixture-of-Agents: its agents, layers and sampling defaults."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moa_graph.config.agents import KNOWN_PROVIDERS as KNOWN_PROVIDERS
from moa_graph.config.agents import AgentSpec as AgentSpec
from moa_graph.config.agents import named
from moa_graph.config.aggregate_prompt import AGGREGATE_PROMPT
from moa_graph.config.call_settings import CallSettings as CallSettings
from moa_graph.config.call_settings import nest_call_settings
from moa_graph.errors import ConfigError

Aggregation = Literal["synthesize", "rank", "vote", "vote-hint", "consensus", "auto"]
"""The name of an aggregation strategy."""


class EarlyExit(BaseModel):
    r"""When a MoA pays for less than all of it: early exit on agreement, staged proposers.

    After each stage of a proposer layer, the proposals of that layer so far are
    checked: when they agree, the later stages and layers and the aggregator are
    skipped and the most agreed proposal is the answer. Agreement is the one the
    ``consensus`` and ``auto`` aggregations use (:mod:`moa_graph.strategies.agreement`).

    Attributes:
        agree: What agreeing means: ``answer``, they state the same final answer
            (``The answer is 42``, ``\boxed{}``, a lone option letter), or, with the
            config's ``check_code``, their code passes every example in the prompt;
            ``similar``, their text is at least ``min_similarity`` alike the most
            agreed one; ``auto``, ``answer`` where most state one or carry code that the
            prompt's examples check, else ``similar``.
        quorum: The share of the layer's proposals so far (failed ones count) that
            must agree, above one half; at least two must, always.
        min_similarity: How alike two texts must be to agree (0 to 1: the mean of
            their word and word-pair F1 overlaps).
        stages: The sizes of a layer's first stages; the rest of the layer is the
            last stage, run only when the stages before it did not agree. ``[2]``:
            the first two proposers, then the others only if those two disagree.
            Every layer is staged alike, so each needs more agents than these take.
        stop_unchanged: Skip the later layers when a layer's answer is the one of
            the layer before (by ``agree``); the aggregator then runs on that layer.
        tool_calls: With tools bound: ``agree``, proposals end a stage when they
            make equal calls, as answers agree; ``first``, the first proposer of the
            first layer decides alone: a reply of calls is the answer, and a reply in
            text goes to the aggregator, bound to the tools, with no other proposer
            asked (one greedy model where a mixture does not call tools better).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    agree: Literal["answer", "similar", "auto"] = "auto"
    quorum: float = Field(default=1.0, gt=0.5, le=1)
    min_similarity: float = Field(default=0.8, ge=0, le=1)
    stages: list[int] = Field(default_factory=list)
    stop_unchanged: bool = False
    tool_calls: Literal["agree", "first"] = "agree"

    @field_validator("stages")
    @classmethod
    def _check_stages(cls, stages: list[int]) -> list[int]:
        if any(size < 1 for size in stages):
            raise ValueError(f"{stages}: every stage needs at least one agent")
        if stages and stages[0] < 2:
            raise ValueError(f"{stages}: the first stage needs two agents or more to agree")
        return stages


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
            :mod:`moa_graph.strategies.aggregation`.
        check_code: Let ``consensus`` and ``auto`` run proposed code against the
            doctest examples of the prompt to choose between proposals (in CPython
            compiled to WebAssembly: no host files, network or processes, time and
            memory limits; see :mod:`moa_graph.sandbox.execute`).
        name: The preset's name, if the config came from one (shown in traces).
        description: One line describing the config.
        calls: How its model calls are made: timeouts, retries, backoff, rate limits,
            the layers' deadline and ``min_proposals``, the aggregator's fallbacks
            (:class:`CallSettings`). These may also be given at the config's top
            level, as files written before ``calls`` existed give them.
        early_exit: Stop before the last layer or the aggregator when proposals
            agree, and run layers in stages (:class:`EarlyExit`); ``true`` takes its
            defaults. None (the default): every layer and the aggregator always run.
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
    calls: CallSettings = Field(default_factory=CallSettings)
    early_exit: EarlyExit | None = None

    @field_validator("layers")
    @classmethod
    def _check_layers(cls, layers: list[list[AgentSpec]]) -> list[list[AgentSpec]]:
        for number, layer in enumerate(layers, 1):
            if not layer:
                raise ValueError(f"layer {number} has no agents")
        return [named(layer, f"layer {n}") for n, layer in enumerate(layers, 1)]

    @model_validator(mode="before")
    @classmethod
    def _nest_call_settings(cls, data: Any) -> Any:
        return nest_call_settings(data) if isinstance(data, Mapping) else data

    @model_validator(mode="after")
    def _check_min_proposals(self) -> MoAConfig:
        for number, layer in enumerate(self.layers, 1):
            if len(layer) < self.calls.min_proposals:
                raise ValueError(
                    f"min_proposals is {self.calls.min_proposals} but layer {number} "
                    f"has only {len(layer)} agents"
                )
        return self

    @field_validator("early_exit", mode="before")
    @classmethod
    def _accept_switch(cls, early_exit: Any) -> Any:
        if isinstance(early_exit, bool):
            return {} if early_exit else None
        return early_exit

    @model_validator(mode="after")
    def _check_stages(self) -> MoAConfig:
        stages = self.early_exit.stages if self.early_exit else []
        for number, layer in enumerate(self.layers, 1):
            if stages and sum(stages) >= len(layer):
                raise ValueError(
                    f"early_exit.stages: {stages} take {sum(stages)} agents but layer {number} "
                    f"has {len(layer)}; leave at least one for its last stage"
                )
        return self

    @field_validator("aggregator")
    @classmethod
    def _name_aggregator(cls, aggregator: AgentSpec) -> AgentSpec:
        return named([aggregator], "the aggregator")[0]

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
        flat = CallSettings.model_fields.keys() & data.keys()
        raise ConfigError(f"invalid {source}: {_describe_config_error(error, flat)}") from None


def _describe_config_error(error: ValidationError, flat: AbstractSet[str]) -> str:
    """Return every problem of a config on one line, each naming its field.

    A call setting given at the top level (one of ``flat``) is named as it was given,
    not under ``calls``. Missing fields read ``field required``; unknown ones ``unknown
    field``, with the closest known field's name when one is close.
    """
    problems: list[str] = []
    for item in error.errors():
        location = item["loc"]
        given_flat = len(location) > 1 and location[0] == "calls" and location[1] in flat
        shown = location[1:] if given_flat else location
        where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in shown)
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
    # Unknown fields are refused in the config itself (which takes call settings too),
    # its call settings, its early exit or one of its agents.
    fields_at: dict[tuple[int | str, ...], list[str]] = {
        (): [*MoAConfig.model_fields, *CallSettings.model_fields],
        ("calls",): list(CallSettings.model_fields),
        ("early_exit",): list(EarlyExit.model_fields),
    }
    fields = fields_at.get(location[:-1], list(AgentSpec.model_fields))
    close = difflib.get_close_matches(str(location[-1]), fields, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
