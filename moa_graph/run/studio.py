"""Runtime options of a MoA graph, set per run through LangGraph's ``context_schema``.

LangGraph Server (``langgraph dev``, Studio) needs one topology for every run of a
graph: it draws the graph, reads thread state and resumes interrupts with the same
nodes. So :func:`create_configurable_moa` builds the nodes once, for the deepest MoA
a run may ask for, and each node follows the plan of the run's :class:`MoAContext`
(:class:`moa_graph.graph.plan.Planner`): which preset's model it calls, with what
sampling, whether its layer runs at all (later layers pass through when fewer are
asked), and whether its tokens stream.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from langgraph.graph import StateGraph
from pydantic import BaseModel, ConfigDict, Field, field_validator

from moa_graph.config.model import MoAConfig
from moa_graph.config.presets import check_preset_name, load_preset
from moa_graph.graph.build import build_graph
from moa_graph.graph.plan import RunOptions
from moa_graph.graph.planner import Planner
from moa_graph.graph.state import MoAInput, MoAOutput, MoAState
from moa_graph.run.factory import resolve_config


class MoAContext(BaseModel):
    """What a run of a configurable MoA graph may change (shown as a form in Studio).

    Attributes:
        preset: Call this preset's models instead of the graph's own; its layers must
            have as many agents as the graph's.
        temperature: The default sampling temperature of every agent (agents with
            their own keep it), as in a request to ``moa serve`` with
            ``"moa": {"sampling": "all"}``.
        layers: How many proposer layers run (later layers pass through).
        show_proposals: Stream every proposer's tokens, not only the answer's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = Field(
        default=None,
        description="Call this preset's models (same layer widths); empty: the graph's own.",
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Default sampling temperature of the agents."
    )
    layers: int | None = Field(
        default=None, ge=1, description="Proposer layers to run; empty: the preset's own count."
    )
    show_proposals: bool = Field(
        default=False,
        description="Stream every proposer's tokens too, not only the aggregator's answer.",
    )

    @field_validator("preset")
    @classmethod
    def _check_preset(cls, preset: str | None) -> str | None:
        """Refuse anything but a plain preset name (never a path); empty means none."""
        return check_preset_name(preset) if preset else None

    def run_options(self) -> RunOptions:
        """Return the options of the run this context describes."""
        return RunOptions(
            preset=self.preset,
            layers=self.layers,
            temperature=self.temperature,
            sampling="all",
            show_proposals=self.show_proposals,
        )

    @classmethod
    def of(cls, context: Any) -> RunOptions:
        """Return the options of a run's context (None, a mapping or a MoAContext).

        Raises:
            pydantic.ValidationError: The context is not a valid MoAContext.
        """
        if isinstance(context, MoAContext):
            return context.run_options()
        return cls.model_validate(context or {}).run_options()


PresetLoader = Callable[[str], MoAConfig]
"""Turns a preset name into a config, e.g. :func:`moa_graph.load_preset`."""


def create_configurable_moa(
    config: MoAConfig | str,
    *,
    max_layers: int = 3,
    load: PresetLoader = load_preset,
) -> StateGraph[MoAState, MoAContext, MoAInput, MoAOutput]:
    """Build a MoA graph whose preset, sampling, depth and streaming are per-run options.

    The graph has ``max_layers`` proposer layers (the config's last layer repeated,
    as the paper stacks the same proposers) and reads a :class:`MoAContext`. Without
    a context it runs exactly as ``config``.

    Args:
        config: The graph's own config, or a preset name.
        max_layers: The deepest MoA a run may ask for; at least the config's depth.
        load: Loads the preset a run names (to point presets at another endpoint, say);
            each name is loaded once.

    Returns:
        The uncompiled graph, with ``context_schema=MoAContext``.

    Raises:
        ConfigError: The config or preset is invalid, or a model cannot be resolved.
        ValueError: ``max_layers`` is below the config's number of layers.

    Example:
        >>> graph = create_configurable_moa("local-tiny").compile()  # doctest: +SKIP
        >>> graph.invoke(
        ...     {"messages": [("user", "Hi")]}, context={"layers": 2}
        ... )  # doctest: +SKIP
    """
    own = resolve_config(config)
    if max_layers < len(own.layers):
        raise ValueError(f"max_layers={max_layers} is below the config's {len(own.layers)} layers")
    planner = Planner(own, depth=max_layers, load=lru_cache(maxsize=16)(load))
    return build_graph(planner, MoAContext.of, context_schema=MoAContext)
