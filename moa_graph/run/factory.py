"""Making a MoA graph from what a user names: a config, its data, a preset or a file.

The one place where the library turns names and files into a config before the
graph core (:mod:`moa_graph.graph.build`) builds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.caches import BaseCache
from langgraph.graph import StateGraph

from moa_graph.config.files import load_config
from moa_graph.config.model import MoAConfig, config_from_data
from moa_graph.config.presets import load_preset
from moa_graph.graph.build import build_graph, run_options
from moa_graph.graph.plan import RunOptions
from moa_graph.graph.planner import Planner
from moa_graph.graph.state import MoAInput, MoAOutput, MoAState

__all__ = ["RunOptions", "create_moa", "resolve_config"]


def resolve_config(config: MoAConfig | Mapping[str, Any] | str | Path) -> MoAConfig:
    """Accept a config, plain config data, a preset name, or a config file path.

    Raises:
        ConfigError: The preset or file is unknown, or the config invalid.
    """
    if isinstance(config, MoAConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_data(config)
    if isinstance(config, Path) or Path(config).suffix in (".yaml", ".yml", ".toml", ".json"):
        return load_config(config)
    return load_preset(config)


def create_moa(
    config: MoAConfig | Mapping[str, Any] | str | Path,
    *,
    context_schema: type[Any] | None = None,
    stream_proposers: bool = True,
    cache: BaseCache | None = None,
) -> StateGraph[MoAState, Any, MoAInput, MoAOutput]:
    """Build a Mixture-of-Agents graph.

    Every proposer of every layer and the aggregator is its own node. Layer 1 fans
    out from the start; each node of layer ``i + 1`` waits for all of layer ``i``;
    the aggregator waits for the last layer. Models are resolved here, so a missing
    API key fails before anything runs.

    Args:
        config: A :class:`MoAConfig`, plain config data, a preset name, or the path
            of a YAML, TOML or JSON config file.
        context_schema: Passed to :class:`StateGraph`, for graphs embedded in apps
            that declare one. A run's context may be a :class:`RunOptions` (the
            sampling, depth and streaming of that run).
        stream_proposers: Whether proposers stream their tokens under
            ``stream_mode="messages"``. Callers that show only the final answer
            should pass False: proposers then answer in one response each, which
            saves a callback per token (the aggregator always streams).
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

    Example:
        >>> graph = create_moa("together-moa-lite").compile()  # doctest: +SKIP
        >>> graph.invoke({"messages": [("user", "Why is the sky blue?")]})  # doctest: +SKIP
    """
    planner = Planner(resolve_config(config), stream_proposers=stream_proposers, cache=cache)
    return build_graph(planner, run_options, context_schema=context_schema)
