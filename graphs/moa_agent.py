"""An agent whose model is a whole MoA: ``create_agent`` with :class:`moa_graph.ChatMoA`.

The agent loop is LangChain's own (model -> tools -> model -> answer); the model is a
mixture. Its proposers see the tools and the results so far and propose what to do;
its aggregator, bound to the tools, decides: call a tool (a calculator, a search over
the local documents) or answer; where most proposals make the same call, that call is
the answer without an aggregator call.

Its preset is ``MOA_GRAPHS_PRESET`` when set, else :data:`AGENT_PRESET`, which runs
offline (``moa models install``).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from langchain.agents import create_agent
from langgraph.graph.state import CompiledStateGraph

from graphs.served import served_preset
from graphs.tools import TOOLS
from moa_graph import ChatMoA, MoAConfig

AGENT_PRESET = "local"
"""The agent's preset unless ``MOA_GRAPHS_PRESET`` names another: offline, on
Qwen2.5-Coder-1.5B, which writes calls of the tools it is given."""

SYSTEM_PROMPT = (
    "Answer the user's question. Use the calculator for arithmetic and search the "
    "documents for facts about them; say which tool results your answer rests on."
)


def build(config: MoAConfig | None = None, *, name: str = "moa_agent") -> Any:
    """Build the agent; ``config`` replaces the served preset (tests pass fakes).

    Returns:
        The compiled agent graph (``create_agent`` compiles it).
    """
    if config is None:
        config = served_preset(os.environ.get("MOA_GRAPHS_PRESET", AGENT_PRESET))
    return create_agent(ChatMoA(config), tools=TOOLS, system_prompt=SYSTEM_PROMPT, name=name)


@cache
def make_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """Return the graph ``langgraph dev`` serves; the server brings the checkpointer."""
    graph: CompiledStateGraph[Any, Any, Any, Any] = build()
    return graph
