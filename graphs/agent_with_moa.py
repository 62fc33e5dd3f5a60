"""An agent app that asks a MoA only its hard questions.

The parent is a plain ``MessagesState`` graph. A router sends short, simple
questions to one model (``quick_answer``) and the rest to the compiled MoA graph,
added as the node ``moa``: a subgraph, so ``stream(..., subgraphs=True)`` shows the
MoA's own layers and aggregator under the ``moa`` namespace.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, MessagesState, StateGraph

from graphs import served_graph
from graphs.served import DEFAULT_PRESET, served_moa, served_preset
from moa_graph import MoAConfig, MoAContext, check_conversation, resolve_model

HARD_WORDS = re.compile(
    r"\b(why|how|explain|compare|prove|derive|design|plan|analy[sz]e|trade-?offs?|step by step)\b",
    re.IGNORECASE,
)
"""Words that ask for reasoning rather than a lookup."""

HARD_LENGTH = 25
"""Questions of more words than this go to the MoA whatever they say."""


def is_hard(question: str) -> bool:
    """Whether a question deserves the MoA: long, or asking for reasoning.

    A heuristic keeps the router free and predictable; swap in a classifier model
    for real traffic.
    """
    return len(question.split()) > HARD_LENGTH or bool(HARD_WORDS.search(question))


def route(state: MessagesState) -> Literal["moa", "quick_answer"]:
    """Send the latest question to the MoA or to the single model."""
    check_conversation(state["messages"])
    return "moa" if is_hard(state["messages"][-1].text) else "quick_answer"


def build(config: MoAConfig | None = None) -> StateGraph[Any, Any, Any, Any]:
    """Build the graph; ``config`` replaces the served preset (tests pass fakes).

    The quick answers come from the MoA's aggregator model.
    """
    if config is None:
        config = served_preset(os.environ.get("MOA_GRAPHS_PRESET", DEFAULT_PRESET))
    model: BaseChatModel = resolve_model(config.aggregator, **config.sampling(config.aggregator))

    def quick_answer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState, MoAContext)
    builder.add_node(
        "quick_answer",
        quick_answer,
        metadata={"role": "single-model", "model": config.aggregator.model_id},
    )
    builder.add_node("moa", served_moa(config).compile(), metadata={"role": "moa"})
    builder.add_conditional_edges(START, route)
    builder.add_edge("quick_answer", END)
    builder.add_edge("moa", END)
    return builder


make_graph = served_graph(build, "agent_with_moa")
