"""Graph construction: one node per agent, layers fanned out in parallel.

The graph is returned uncompiled so the caller chooses the checkpointer, store and
cache, and can embed it in a larger application. Every node looks up its agent's
:class:`~moa_graph.plan.AgentPlan` for the run (the config's own, or what the run's
context asks for) and hands it to :mod:`moa_graph.nodes`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AnyMessage
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import get_runtime

from moa_graph import nodes
from moa_graph.config import MoAConfig
from moa_graph.errors import InputError
from moa_graph.nodes import check_conversation
from moa_graph.plan import (
    AGGREGATOR_NODE,
    AGGREGATOR_SLOT,
    AGGREGATOR_TAG,
    PROPOSER_TAG,
    Planner,
    RunOptions,
    Slot,
    proposer_node,
)
from moa_graph.state import MoAInput, MoAOutput, MoAState

__all__ = [
    "AGGREGATOR_NODE",
    "AGGREGATOR_TAG",
    "PROPOSER_TAG",
    "build_graph",
    "check_conversation",
    "check_input",
    "proposer_node",
    "run_options",
]

OptionsReader = Callable[[Any], RunOptions]
"""Turns a run's LangGraph context into :class:`RunOptions`."""


def run_options(context: Any) -> RunOptions:
    """Return the options of a run of a plain MoA graph: its context, a :class:`RunOptions`.

    Raises:
        InputError: The context is something else.
    """
    if context is None:
        return RunOptions()
    if isinstance(context, RunOptions):
        return context
    raise InputError(f"a MoA graph's context is a RunOptions, not a {type(context).__name__}")


def build_graph(
    planner: Planner, read_options: OptionsReader, *, context_schema: type[Any] | None = None
) -> StateGraph[MoAState, Any, MoAInput, MoAOutput]:
    """Build the graph of a planner's slots; each run's context picks its plan.

    Args:
        planner: Plans the runs; its slots (layers and widths) are the graph's nodes.
        read_options: Turns a run's context into its options.
        context_schema: Passed to :class:`StateGraph`.
    """
    builder: StateGraph[MoAState, Any, MoAInput, MoAOutput] = _MoAGraph(
        MoAState, context_schema, input_schema=MoAInput, output_schema=MoAOutput
    )
    name = planner.config.name
    builder.graph_name = f"MoA {name}" if name else "MoA"  # type: ignore[attr-defined]
    layers = [[agent.node for agent in layer] for layer in planner.slots_plan().layers]
    previous: list[str] = []
    for number, names in enumerate([*layers, [AGGREGATOR_NODE]], 1):
        for index, node in enumerate(names):
            slot = AGGREGATOR_SLOT if node == AGGREGATOR_NODE else (number, index)
            _add_node(builder, node, slot, planner, read_options)
            if previous:
                builder.add_edge(previous, node)
        if not previous:
            builder.add_conditional_edges(START, _start(names, planner, read_options), names)
        previous = names
    builder.add_edge(AGGREGATOR_NODE, END)
    return builder


def check_input(config: MoAConfig, messages: Sequence[AnyMessage]) -> None:
    """Check a conversation against a config without calling any model.

    The graph runs the same checks before its first layer; calling this first
    keeps bad input from being written to a checkpointer at all.

    Raises:
        InputError: The conversation is empty, its last message is not from the
            user or empty, it holds content (e.g. images) an agent cannot take, or
            it does not fit an agent's context window.
    """
    nodes.check_plan(Planner(config).plan(), messages)


class _MoAGraph(StateGraph[MoAState, Any, MoAInput, MoAOutput]):
    """A StateGraph whose compiled graph is named after its config.

    A trace's root run then reads ``MoA local`` rather than ``LangGraph``.
    """

    graph_name = "MoA"

    def compile(self, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        return super().compile(*args, name=name or self.graph_name, **kwargs)


def _add_node(
    builder: StateGraph[Any, Any, Any, Any],
    node: str,
    slot: Slot,
    planner: Planner,
    read_options: OptionsReader,
) -> None:
    """Add the node of one agent slot: it runs the slot's agent of the run's plan."""

    def agent(state: MoAState) -> Any:
        return planner.plan(read_options(get_runtime().context)).agent(slot)

    def run(state: MoAState) -> dict[str, Any]:
        plan = agent(state)
        return {} if plan is None else nodes.run_agent(plan, state)

    async def arun(state: MoAState) -> dict[str, Any]:
        plan = agent(state)
        return {} if plan is None else await nodes.arun_agent(plan, state)

    own = planner.slots_plan().agent(slot)
    assert own is not None
    metadata = {
        "role": own.role,
        "layer": own.layer,
        "agent": own.name,
        "model": own.spec.model_id,
        "preset": own.preset,
    }
    builder.add_node(node, RunnableLambda(run, arun, name=node), metadata=metadata)


def _start(first_layer: list[str], planner: Planner, read_options: OptionsReader) -> Any:
    def check_input(state: MoAState) -> list[str]:
        plan = planner.plan(read_options(get_runtime().context))
        nodes.check_plan(plan, state["messages"])
        return first_layer

    return check_input
