"""Graph construction: one node per agent, layers fanned out in parallel.

The graph is returned uncompiled so the caller chooses the checkpointer, store and
cache, and can embed it in a larger application. Every node looks up its agent's
:class:`~moa_graph.graph.plan.AgentPlan` for the run (the config's own, or what the run's
context asks for) and hands it to :mod:`moa_graph.graph.nodes`.

A config with ``early_exit`` adds a check node after each stage of every layer (the
decisions are :mod:`moa_graph.graph.early_exit`'s) and an ``early_exit`` node that answers
with the agreed proposal; conditional edges from each check lead to the next stage,
the next layer, the aggregator or that node, so Studio draws every path a run may take.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AnyMessage
from langchain_core.runnables import RunnableLambda
from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import get_runtime

from moa_graph.config.model import MoAConfig
from moa_graph.errors import InputError
from moa_graph.graph import clients, early_exit, nodes
from moa_graph.graph.early_exit import EXIT_NODE, Check
from moa_graph.graph.input_checks import check_conversation, check_plan
from moa_graph.graph.plan import (
    AGGREGATOR_NODE,
    AGGREGATOR_SLOT,
    AGGREGATOR_TAG,
    PROPOSER_TAG,
    MoAPlan,
    RunOptions,
    Slot,
    proposer_node,
)
from moa_graph.graph.planner import Planner
from moa_graph.graph.state import MoAInput, MoAOutput, MoAState
from moa_graph.sandbox import runtime as wasi_runtime

__all__ = [
    "AGGREGATOR_NODE",
    "AGGREGATOR_TAG",
    "EXIT_NODE",
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
    slots = planner.slots_plan()
    name = slots.aggregator.preset
    builder.graph_name = f"MoA {name}" if name else "MoA"  # type: ignore[attr-defined]
    for agent in slots.agents():
        slot = AGGREGATOR_SLOT if agent.role == "aggregator" else (agent.layer, agent.index)
        _add_node(builder, agent.node, slot, planner, read_options)
    layers = [[agent.node for agent in layer] for layer in slots.layers]
    if slots.exit is None:
        builder.add_conditional_edges(START, _start(layers[0], planner, read_options), layers[0])
        for before, after in itertools.pairwise([*layers, [AGGREGATOR_NODE]]):
            for node in after:
                builder.add_edge(before, node)
    else:
        checks = early_exit.checks(layers, slots.exit.stages)
        first = list(checks[0].after)
        builder.add_conditional_edges(START, _start(first, planner, read_options), first)
        for check in checks:
            _add_check(builder, check, planner, read_options)

        def exit_answer(state: MoAState) -> dict[str, Any]:
            plan = planner.plan(read_options(get_runtime().context))
            return early_exit.answer(state, plan.aggregator.tool_set)

        answer = RunnableLambda(exit_answer, _async(exit_answer), name=EXIT_NODE)
        builder.add_node(EXIT_NODE, answer, metadata={"role": "early_exit"})
        builder.add_edge(EXIT_NODE, END)
    builder.add_edge(AGGREGATOR_NODE, END)
    return builder


def check_input(config: MoAConfig, messages: Sequence[AnyMessage]) -> None:
    """Check a conversation against a config, and start what a run needs, calling no model.

    The graph does the same before its first layer; calling this first keeps bad
    input from being written to a checkpointer at all.

    Raises:
        InputError: The conversation is empty, its last message is not from the
            user or empty, it holds content (e.g. images) an agent cannot take, or
            it does not fit an agent's context window.
        MoAError: The sandbox that ``check_code`` needs, or a local model's weights,
            are missing (or its server cannot start); says the command that installs them.
    """
    _ready(Planner(config).plan(), messages)


def _ready(plan: MoAPlan, messages: Sequence[AnyMessage]) -> None:
    """Check a run's conversation against its plan, and start what the run needs.

    What a run needs fails here, before any model call: the sandbox, local weights
    (read now, never while a graph is built).
    """
    check_plan(plan, messages)
    if plan.aggregator.check_code:  # the config's, alike for every agent
        wasi_runtime.wasm_path()
    clients.start_local_models(plan)


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
        plan = planner.plan(read_options(get_runtime().context)).agent(slot)
        return early_exit.aggregator_of(plan, state) if slot == AGGREGATOR_SLOT else plan

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
    # LangGraph's own node runnable, as LangChain's create_agent uses: it reads the
    # functions' signatures once, where RunnableLambda reads them again on every call.
    builder.add_node(node, RunnableCallable(run, arun, name=node), metadata=metadata)


def _start(first_layer: list[str], planner: Planner, read_options: OptionsReader) -> Any:
    def check_input(state: MoAState) -> list[str]:
        _ready(planner.plan(read_options(get_runtime().context)), state["messages"])
        return first_layer

    return check_input


def _add_check(
    builder: StateGraph[Any, Any, Any, Any],
    check: Check,
    planner: Planner,
    read_options: OptionsReader,
) -> None:
    """Add a check node after its stage, and its conditional edges to where it may lead."""

    def plan() -> MoAPlan:
        return planner.plan(read_options(get_runtime().context))

    def decide(state: MoAState) -> Any:
        return early_exit.check_node(plan(), state, check)

    async def adecide(state: MoAState) -> Any:
        run = plan()
        if early_exit.runs_code(run):  # its processes run off the event loop
            return await asyncio.to_thread(early_exit.check_node, run, state, check)
        return early_exit.check_node(run, state, check)

    def route(state: MoAState) -> list[str]:
        goes = {"answer": [EXIT_NODE], "aggregate": [AGGREGATOR_NODE], "next": [*check.then]}
        return goes[early_exit.route(state, check, len(plan().layers))]

    metadata = {"role": "check", "layer": check.layer, "stage": check.stage}
    builder.add_node(
        check.node, RunnableLambda(decide, adecide, name=check.node), metadata=metadata
    )
    builder.add_edge(list(check.after), check.node)
    # With ``tool_calls: first``, a first-layer check sends a run with tools bound and
    # a first proposal in text to the aggregator.
    policy = planner.slots_plan().exit
    first = policy is not None and policy.tool_calls == "first"
    to_aggregator = check.last or (check.layer == 1 and first)
    ends = [*check.then, EXIT_NODE, *([AGGREGATOR_NODE] if to_aggregator else [])]
    builder.add_conditional_edges(check.node, route, ends)


def _async(function: Callable[[MoAState], Any]) -> Callable[[MoAState], Any]:
    """Return ``function`` as a coroutine function (it does no I/O: no thread for it)."""

    async def run(state: MoAState) -> Any:
        return function(state)

    return run
