"""MoA grounded in local documents: a BM25 retrieval node runs before the proposers.

The passages go into the conversation as a system message just before the user's
question, so every proposer and the aggregator read them, and they stay in the thread
for later turns.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage, RemoveMessage, SystemMessage
from langgraph.graph import START, StateGraph

from graphs import served_graph
from graphs.documents import search
from graphs.served import around_moa
from moa_graph import MoAConfig, MoAState, check_conversation

PASSAGES = 2
"""How many passages go in front of the question."""


def retrieve(state: MoAState) -> dict[str, list[AnyMessage | RemoveMessage]]:
    """Put the passages that match the latest question in front of it."""
    check_conversation(state["messages"])
    question = state["messages"][-1]
    assert isinstance(question, HumanMessage) and question.id is not None
    passages = search(question.text, k=PASSAGES)
    if not passages:
        return {"messages": []}
    found = "\n\n".join(f"[{p.source}] {p.text}" for p in passages)
    context = SystemMessage(f"Passages from the local documents:\n\n{found}", name="retriever")
    # Move the question behind the passages (under a new id, or add_messages would
    # put it back in its old place) so that it stays the conversation's last message.
    moved = question.model_copy(update={"id": None})
    return {"messages": [RemoveMessage(question.id), context, moved]}


def build(config: MoAConfig | None = None) -> StateGraph[Any, Any, Any, Any]:
    """Build the graph; ``config`` replaces the served preset (tests pass fakes)."""
    retrieval = around_moa(config).add_node("retrieve", retrieve, metadata={"role": "retriever"})
    return retrieval.add_edge(START, "retrieve").add_edge("retrieve", "moa")


make_graph = served_graph(build, "moa_with_retrieval")
