"""Example graphs served by ``langgraph dev`` (see ``langgraph.json``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

Graph = CompiledStateGraph[Any, Any, Any, Any]


def served_graph(
    build: Callable[[], StateGraph[Any, Any, Any, Any]], name: str
) -> Callable[[], Graph]:
    """Return the ``make_graph`` that ``langgraph.json`` names for a graph module.

    The graph is built from the served preset and compiled on the first call, once;
    the server brings the checkpointer.

    Args:
        build: The module's ``build``, called with no config.
        name: The graph's name in ``langgraph.json``.
    """

    @cache
    def make_graph() -> Graph:
        return build().compile(name=name)

    return make_graph
