"""Which models the served graphs run: a preset, optionally pointed at another endpoint.

Environment variables (all optional):

- ``MOA_GRAPHS_PRESET``: the preset the graphs are built from (default ``local-tiny``,
  which needs no key: ``moa models install smollm2-135m``).
- ``MOA_GRAPHS_BASE_URL``: send every agent's calls to this OpenAI-compatible
  endpoint instead (a vLLM, Ollama or llama.cpp server; the tests' fake server).
- ``MOA_GRAPHS_MAX_LAYERS``: the deepest MoA a run may ask for (default 3).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from langgraph.graph import StateGraph

from moa_graph import (
    AgentSpec,
    MoAConfig,
    MoAContext,
    MoAInput,
    MoAOutput,
    MoAState,
    create_moa,
    load_preset,
)

DEFAULT_PRESET = "local-tiny"


def served_preset(name: str) -> MoAConfig:
    """Load a preset, with every agent moved to ``MOA_GRAPHS_BASE_URL`` when it is set."""
    config = load_preset(name)
    base_url = os.environ.get("MOA_GRAPHS_BASE_URL")
    if not base_url:
        return config

    def moved(agent: AgentSpec) -> AgentSpec:
        model = agent.model_id.partition(":")[2] or agent.model_id
        return agent.model_copy(update={"model": f"openai:{model}", "base_url": base_url})

    return config.model_copy(
        update={
            "layers": [[moved(a) for a in layer] for layer in config.layers],
            "aggregator": moved(config.aggregator),
        }
    )


def served_moa(
    config: MoAConfig | None = None, *, load: Callable[[str], MoAConfig] = served_preset
) -> StateGraph[MoAState, Any, MoAInput, MoAOutput]:
    """Build the configurable MoA every example graph is built around.

    Args:
        config: The MoA to build; by default the preset ``MOA_GRAPHS_PRESET`` names.
        load: Loads the preset a run's context names.
    """
    if config is None:
        config = served_preset(os.environ.get("MOA_GRAPHS_PRESET", DEFAULT_PRESET))
    max_layers = max(int(os.environ.get("MOA_GRAPHS_MAX_LAYERS", "3")), len(config.layers))
    return create_moa(config, context_schema=MoAContext, max_layers=max_layers, load=load)


def around_moa(config: MoAConfig | None = None) -> StateGraph[Any, Any, Any, Any]:
    """Return an app graph on the MoA's state and run context, with the MoA as node ``moa``.

    Args:
        config: As for :func:`served_moa`.
    """
    builder = StateGraph(MoAState, MoAContext, input_schema=MoAInput, output_schema=MoAOutput)
    builder.add_node("moa", served_moa(config).compile(), metadata={"role": "moa"})
    return builder
