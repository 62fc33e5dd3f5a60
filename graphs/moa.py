"""The plain MoA graph: proposer layers and an aggregator, options set per run."""

from __future__ import annotations

from typing import Any

from langgraph.graph import StateGraph

from graphs import served_graph
from graphs.served import served_moa
from moa_graph import MoAConfig


def build(config: MoAConfig | None = None) -> StateGraph[Any, Any, Any, Any]:
    """Build the graph; ``config`` replaces the served preset (tests pass fakes)."""
    return served_moa(config)


make_graph = served_graph(build, "moa")
