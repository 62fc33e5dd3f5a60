"""The plain MoA graph: proposer layers and an aggregator, options set per run."""

from __future__ import annotations

from functools import cache
from typing import Any

from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from graphs.served import served_moa
from moa_graph import MoAConfig


def build(config: MoAConfig | None = None) -> StateGraph[Any, Any, Any, Any]:
    """Build the graph; ``config`` replaces the served preset (tests pass fakes)."""
    return served_moa(config)


@cache
def make_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """Return the graph ``langgraph dev`` serves; the server brings the checkpointer."""
    return build().compile(name="moa")
