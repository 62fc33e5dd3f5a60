"""How a mixture's model calls are made: timeouts, retries, rate limits, deadlines, fallbacks.

:class:`CallSettings` is ``MoAConfig.calls``. Files written before it existed give its
fields at the top of the config (``timeout_s: 60``); :func:`nest_call_settings` moves
them under ``calls``, so both forms load to the same config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from moa_graph.config.agents import KNOWN_PROVIDERS, AgentSpec, named


class CallSettings(BaseModel):
    """How the calls of a mixture are made, and what a layer or the aggregator does on failure.

    An agent's own ``timeout_s`` and ``max_retries`` override this config's.

    Attributes:
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

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, rate_limits: dict[str, float]) -> dict[str, float]:
        for provider, rate in rate_limits.items():
            if provider not in KNOWN_PROVIDERS:
                raise ValueError(f"unknown provider '{provider}' in rate_limits")
            if rate <= 0:
                raise ValueError(f"rate limit of '{provider}' must be above 0, not {rate}")
        return rate_limits

    @field_validator("aggregator_fallbacks")
    @classmethod
    def _name_fallbacks(cls, fallbacks: list[AgentSpec]) -> list[AgentSpec]:
        return named(fallbacks, "aggregator_fallbacks")

    def for_agent(self, agent: AgentSpec) -> CallSettings:
        """Return these settings with ``agent``'s own ``timeout_s`` and ``max_retries``."""
        own = {"timeout_s": agent.timeout_s, "max_retries": agent.max_retries}
        return self.model_copy(update={k: v for k, v in own.items() if v is not None})


def nest_call_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return config data with the call settings given at its top level moved under ``calls``.

    Raises:
        ValueError: A setting is given both at the top level and under ``calls``.
    """
    flat = {key: data[key] for key in CallSettings.model_fields if key in data}
    nested = data.get("calls", {})
    if isinstance(nested, CallSettings):
        nested = {key: getattr(nested, key) for key in nested.model_fields_set}
    if not flat:
        return dict(data)
    rest = {key: value for key, value in data.items() if key not in flat}
    if not isinstance(nested, Mapping):
        return {**rest, "calls": nested}  # refused as it is, not as unknown fields
    if twice := sorted(flat.keys() & nested.keys()):
        raise ValueError(f"{twice[0]} is given both at the top level and under calls: keep one")
    return {**rest, "calls": {**nested, **flat}}
