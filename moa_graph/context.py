"""Runtime options of a MoA graph, set per run through LangGraph's ``context_schema``.

LangGraph Server (``langgraph dev``, Studio) needs one topology for every run of a
graph: it draws the graph, reads thread state and resumes interrupts with the same
nodes. So :func:`create_configurable_moa` builds the nodes once, for the deepest MoA
a run may ask for, and each node picks its behaviour from the run's
:class:`MoAContext`: which preset's model it calls, at what temperature, whether its
layer runs at all (later layers pass through when fewer are asked), and whether its
tokens stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import StateGraph
from langgraph.runtime import get_runtime
from pydantic import BaseModel, ConfigDict, Field, field_validator

from moa_graph.config import MoAConfig
from moa_graph.errors import InputError
from moa_graph.graph import AGGREGATOR_NODE, create_moa, proposer_node, resolve_config
from moa_graph.presets import check_preset_name, load_preset
from moa_graph.state import MoAInput, MoAOutput, MoAState


class MoAContext(BaseModel):
    """What a run of a configurable MoA graph may change (shown as a form in Studio).

    Attributes:
        preset: Call this preset's models instead of the graph's own; its layers must
            have as many agents as the graph's.
        temperature: Default sampling temperature; agents with their own keep it.
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


PresetLoader = Callable[[str], MoAConfig]
"""Turns a preset name into a config, e.g. :func:`moa_graph.load_preset`."""


def create_configurable_moa(
    config: MoAConfig | str,
    *,
    max_layers: int = 3,
    load: PresetLoader = load_preset,
) -> StateGraph[MoAState, MoAContext, MoAInput, MoAOutput]:
    """Build a MoA graph whose preset, temperature, depth and streaming are per-run options.

    The graph has ``max_layers`` proposer layers (the config's last layer repeated,
    as the paper stacks the same proposers) and reads a :class:`MoAContext`. Without
    a context it runs exactly as ``config``.

    Args:
        config: The graph's own config, or a preset name.
        max_layers: The deepest MoA a run may ask for; at least the config's depth.
        load: Loads the preset a run names (to point presets at another endpoint, say).

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
    built = _with_depth(own, max_layers)
    builder = create_moa(built, context_schema=MoAContext)
    graphs = _EffectiveGraphs(own, built, load)
    for layer, agents in enumerate(built.layers, 1):
        for index, agent in enumerate(agents):
            name = proposer_node(layer, agent.name or "")
            builder.nodes[name].runnable = graphs.node(name, layer, index)
    builder.nodes[AGGREGATOR_NODE].runnable = graphs.node(AGGREGATOR_NODE, None, 0)
    return builder


def _with_depth(config: MoAConfig, depth: int) -> MoAConfig:
    """Return ``config`` with ``depth`` layers: cut, or its last layer repeated."""
    layers = [config.layers[min(i, len(config.layers) - 1)] for i in range(depth)]
    return config.model_copy(update={"layers": layers})


class _EffectiveGraphs:
    """The graph a run's options describe, built once per distinct options."""

    def __init__(self, own: MoAConfig, built: MoAConfig, load: PresetLoader) -> None:
        self.own = own
        self.built = built
        self.load = load
        self.graphs: dict[MoAContext, StateGraph[Any, Any, Any, Any]] = {}

    def effective_config(self, options: MoAContext) -> MoAConfig:
        """Return the config a run with ``options`` follows.

        Raises:
            InputError: Too many layers, or a preset whose layers differ in width.
        """
        same = options.preset in (None, self.own.name)
        base = self.own if same else self.load(options.preset or "")
        depth = options.layers or len(base.layers)
        if depth > len(self.built.layers):
            raise InputError(
                f"layers={depth}: this graph has at most {len(self.built.layers)} layers"
            )
        config = _with_depth(base, depth)
        for number, (layer, slots) in enumerate(
            zip(config.layers, self.built.layers[:depth], strict=True), 1
        ):
            if len(layer) != len(slots):
                raise InputError(
                    f"preset '{options.preset}' has {len(layer)} agents in layer {number}, "
                    f"this graph {len(slots)}: serve a graph built from that preset instead"
                )
        if options.temperature is not None:
            config = config.model_copy(update={"temperature": options.temperature})
        return config

    def graph(self, options: MoAContext) -> StateGraph[Any, Any, Any, Any]:
        if options not in self.graphs:
            self.graphs[options] = create_moa(self.effective_config(options))
        return self.graphs[options]

    def target(
        self, options: MoAContext, layer: int | None, index: int
    ) -> Runnable[Any, Any] | None:
        """Return the node of the run's graph that the node at ``(layer, index)`` stands for."""
        graph = self.graph(options)
        config = self.effective_config(options)
        if layer is None:
            name = AGGREGATOR_NODE
        elif layer > len(config.layers):
            return None
        else:
            name = proposer_node(layer, config.layers[layer - 1][index].name or "")
        runnable: Runnable[Any, Any] = graph.nodes[name].runnable  # type: ignore[assignment]
        return runnable

    def node(self, name: str, layer: int | None, index: int) -> Runnable[Any, Any]:
        """Return a node that runs the run's counterpart of the agent at ``(layer, index)``."""

        def prepare(config: RunnableConfig) -> tuple[Runnable[Any, Any] | None, RunnableConfig]:
            options = _options()
            target = self.target(options, layer, index)
            if layer is not None and not options.show_proposals:
                config = {**config, "tags": [*config.get("tags", []), TAG_NOSTREAM]}
            return target, config

        def run(state: MoAState, config: RunnableConfig) -> dict[str, Any]:
            target, config = prepare(config)
            return {} if target is None else target.invoke(state, config)

        async def arun(state: MoAState, config: RunnableConfig) -> dict[str, Any]:
            target, config = prepare(config)
            return {} if target is None else await target.ainvoke(state, config)

        return RunnableLambda(run, arun, name=name)


def _options() -> MoAContext:
    """Return the run's options; a run without a context gets the defaults."""
    context = get_runtime().context
    if context is None:
        return MoAContext()
    if isinstance(context, MoAContext):
        return context
    return MoAContext.model_validate(context)
