"""The one factory: :func:`create_moa`, a MoA graph from what a user names.

Every way to run a mixture builds its graph here: the library's users, ``ChatMoA``,
``moa serve``, the command line and the Studio graphs. A name or file becomes a
config through :func:`moa_graph.config.resolve.resolve_config`; the graph core
(:mod:`moa_graph.graph.build`) builds the graph, and each run's LangGraph context
becomes its :class:`~moa_graph.graph.plan.RunOptions`: a ``RunOptions`` itself, or
Studio's form, :class:`~moa_graph.run.studio.MoAContext`, converted in one place
(:meth:`MoAContext.of <moa_graph.run.studio.MoAContext.of>`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from langchain_core.caches import BaseCache
from langgraph.graph import StateGraph

from moa_graph.calls import secrets
from moa_graph.config.presets import load_preset
from moa_graph.config.resolve import ConfigSource, resolve_config
from moa_graph.graph.build import build_graph, run_options
from moa_graph.graph.plan import RunOptions
from moa_graph.graph.planner import Planner
from moa_graph.graph.state import MoAInput, MoAOutput, MoAState
from moa_graph.run.studio import MoAContext, PresetLoader

__all__ = ["RunOptions", "create_moa"]

STUDIO_LAYERS = 3
"""The deepest MoA a run of a graph with ``context_schema=MoAContext`` may ask for,
unless ``max_layers`` says."""


def create_moa(
    config: ConfigSource,
    *,
    context_schema: type[Any] | None = None,
    max_layers: int | None = None,
    load: PresetLoader | None = None,
    stream_proposers: bool = True,
    cache: BaseCache | None = None,
) -> StateGraph[MoAState, Any, MoAInput, MoAOutput]:
    """Build a Mixture-of-Agents graph.

    Every proposer of every layer and the aggregator is its own node. Layer 1 fans
    out from the start; each node of layer ``i + 1`` waits for all of layer ``i``;
    the aggregator waits for the last layer. Models are resolved here, so a missing
    API key fails before anything runs.

    A run may change what its context says, within the graph's nodes (LangGraph
    Server needs one topology for every run of a graph): the nodes are built for
    ``max_layers`` layers (the config's last layer repeated, as the paper stacks the
    same proposers), later layers pass through when a run asks for fewer, and a run
    that names another preset calls its models (same layer widths).

    Args:
        config: A :class:`MoAConfig`, plain config data, a preset name, or the path
            of a YAML, TOML or JSON config file.
        context_schema: The runs' LangGraph context. :class:`MoAContext` (Studio's
            form: preset, temperature, layers, streaming) makes the graph switchable
            per run: ``max_layers`` defaults to 3 and presets load with
            :func:`moa_graph.load_preset`. Otherwise a run's context may be a
            :class:`RunOptions` (what ``ChatMoA`` and ``moa serve`` pass), or None;
            another schema is passed to :class:`StateGraph`, for graphs embedded in
            apps that declare one.
        max_layers: The deepest MoA a run may ask for; at least the config's depth.
            None: the config's own (3 with ``MoAContext``).
        load: Loads the preset a run names (to point presets at another endpoint,
            say); each name is loaded once. None: runs cannot switch presets (they
            can with ``MoAContext``, through :func:`moa_graph.load_preset`).
        stream_proposers: Whether proposers stream their tokens under
            ``stream_mode="messages"`` unless a run says. Callers that show only the
            final answer should pass False: proposers then answer in one response
            each, which saves a callback per token (the aggregator always streams).
        cache: A LangChain cache for the model calls that are repeatable: those at
            temperature 0 or with a seed. Graphs built with the same cache pay once
            for a call they share (same model, settings and messages), e.g. every
            configuration of an experiment that asks the same greedy question.
            Sampled calls without a seed, and model instances given in the config,
            are never cached, so identical sampled agents still differ.

    Returns:
        The uncompiled graph; compile it with any checkpointer.

    Raises:
        ConfigError: The config is invalid or a model cannot be resolved.
        ValueError: ``max_layers`` is below the config's number of layers.

    Example:
        >>> graph = create_moa("together-moa-lite").compile()  # doctest: +SKIP
        >>> graph.invoke({"messages": [("user", "Why is the sky blue?")]})  # doctest: +SKIP
        >>> studio = create_moa("local-tiny", context_schema=MoAContext).compile()  # doctest: +SKIP
        >>> studio.invoke({"messages": [("user", "Hi")]}, context={"layers": 2})  # doctest: +SKIP
    """
    own = resolve_config(config)
    secrets.redact_traces()
    studio = isinstance(context_schema, type) and issubclass(context_schema, MoAContext)
    depth = max_layers
    if depth is None:
        depth = STUDIO_LAYERS if studio else len(own.layers)
    if depth < len(own.layers):
        raise ValueError(f"max_layers={depth} is below the config's {len(own.layers)} layers")
    if studio and load is None:
        load = load_preset
    planner = Planner(
        own,
        depth=depth,
        stream_proposers=stream_proposers,
        cache=cache,
        load=lru_cache(maxsize=16)(load) if load else None,
    )
    read = MoAContext.of if studio else run_options
    return build_graph(planner, read, context_schema=context_schema)
