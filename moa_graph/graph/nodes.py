"""The work of one agent node: read the state, call the model, write the state.

Proposers and the aggregator share one core: check that enough of the previous
layer answered, build the prompt (references cut to the model's window), let the
aggregation strategy answer without a call where it can, otherwise call the agent's
model and then each fallback, and record the outcome with its progress events.
:func:`run_agent` and :func:`arun_agent` are its sync and async drivers: the core
hands them each step that waits (a code check, a model call) and they run it, so
every decision, the layer deadline's too, is written once.

Retries and timeouts stay per call (:mod:`moa_graph.calls.call`) rather than
LangGraph node policies: a node's ``retry_policy`` would repeat the fallbacks and
cannot honour ``Retry-After`` or refuse to repeat text already streamed, and its
``timeout`` cannot tell a slow first token from a stalled stream. A failed proposer
is recorded in the node itself (not an ``error_handler`` node) so the graph keeps one
node per agent, as Studio draws it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langgraph.config import get_stream_writer

from moa_graph.calls import call as call_layer
from moa_graph.errors import LayerError, ModelCallError, StreamInterruptedError
from moa_graph.graph.agent_prompt import fitted_prompt, references
from moa_graph.graph.plan import AgentPlan
from moa_graph.graph.state import (
    AgentFailed,
    AgentFinished,
    AgentStarted,
    AggregatorStarted,
    LayerStarted,
    MoAState,
    Proposal,
    user_turn,
)
from moa_graph.strategies import tool_text
from moa_graph.strategies.aggregation import STRATEGIES, consensus, voted_calls


def check_layer(agent: AgentPlan, state: MoAState) -> None:
    """Stop the run when too few agents of the previous layer answered.

    Raises:
        LayerError: Fewer than ``min_proposals`` answered; names the failures.
    """
    if agent.layer == 1:
        return
    turn = user_turn(state["messages"])
    previous = [
        p for p in state.get("proposals", []) if p.turn == turn and p.layer == agent.layer - 1
    ]
    answered = sum(p.ok for p in previous)
    if answered < agent.min_proposals:
        failures = "; ".join(f"{p.agent}: {p.error}" for p in previous if not p.ok)
        raise LayerError(
            f"layer {agent.layer - 1}: {answered} of {len(previous)} agents answered, "
            f"{agent.min_proposals} needed; failed: {failures}"
        )


Outcome = AIMessage | ModelCallError | None
"""What a step gave back: an answer, a failed call, or no answer without a model call."""


@dataclass(frozen=True)
class _Select:
    """A step: the aggregation strategy's answer without a model call, if it has one."""

    agent: AgentPlan
    state: MoAState

    def run(self) -> Outcome:
        return _selected(self.agent, self.state)

    async def arun(self) -> Outcome:
        """Run the step; a code check's processes run off the event loop."""
        if self.agent.check_code and not self.agent.tools:
            return await asyncio.to_thread(self.run)
        return self.run()


@dataclass(frozen=True)
class _Attempt:
    """A step: one call of a candidate model, ended at the layer's deadline (monotonic)."""

    request: call_layer.Call
    deadline: float | None

    def run(self) -> Outcome:
        try:
            return call_layer.call(self.request, deadline=self.deadline)
        except ModelCallError as error:
            return error

    async def arun(self) -> Outcome:
        try:
            return await call_layer.acall(self.request, deadline=self.deadline)
        except ModelCallError as error:
            return error


Step = _Select | _Attempt
Steps = Generator[Step, Outcome, dict[str, Any]]


def run_agent(agent: AgentPlan, state: MoAState) -> dict[str, Any]:
    """Run one agent node synchronously; return its state update."""
    steps = _steps(agent, state)
    step = _next(steps, None)
    while isinstance(step, Step):
        step = _next(steps, step.run())
    return step


async def arun_agent(agent: AgentPlan, state: MoAState) -> dict[str, Any]:
    """Run one agent node; return its state update."""
    steps = _steps(agent, state)
    step = _next(steps, None)
    while isinstance(step, Step):
        step = _next(steps, await step.arun())
    return step


def _next(steps: Steps, outcome: Outcome) -> Step | dict[str, Any]:
    """Send the last step's outcome; return the next step, or the state update at the end."""
    try:
        return steps.send(outcome)
    except StopIteration as done:
        update: dict[str, Any] = done.value
        return update


def _steps(agent: AgentPlan, state: MoAState) -> Steps:
    """Run one agent, handing each step that waits (a code check, a model call) to a driver.

    The driver runs each step, sync or async, and sends back its outcome; the agent's
    state update is what the generator returns. Both drivers thus share every decision,
    the layer deadline too: one instant (``time.monotonic()``) that every call ends at.
    """
    started = _started(agent, state)
    due = None if agent.deadline_s is None else time.monotonic() + agent.deadline_s
    try:
        reply, cut = yield from _answer(agent, state, due)
    except ModelCallError as error:
        if due is not None and time.monotonic() >= due:  # whatever ended the call, it was late
            late = ModelCallError(f"layer deadline of {agent.deadline_s:g}s passed")
            return _failed(agent, state, late, started)
        return _failed(agent, state, error, started)
    return _finished(agent, state, reply, started, cut)


def _answer(
    agent: AgentPlan, state: MoAState, due: float | None
) -> Generator[Step, Outcome, tuple[AIMessage, int]]:
    """Return the agent's answer and the references cut for it.

    The strategy's answer without a call where it has one; otherwise the agent's model,
    then each fallback (not LangChain's ``with_fallbacks``: each fallback gets a prompt
    cut to its own window).

    Raises:
        ModelCallError: Every candidate failed, or one failed after its tokens were shown
            (no fallback's answer may follow them).
    """
    if agent.role == "aggregator":
        selected = yield _Select(agent, state)
        if isinstance(selected, AIMessage):
            return selected, 0
    errors = []
    config = agent.call_config()
    for candidate in agent.candidates:
        messages, cut = fitted_prompt(agent, candidate, state)
        call = call_layer.Call(candidate.runnable, messages, config, candidate.policy)
        outcome = yield _Attempt(call, due)
        if isinstance(outcome, AIMessage):
            return _finish(agent, state, outcome), cut
        if isinstance(outcome, StreamInterruptedError):
            raise outcome  # shown tokens cannot be followed by a fallback's answer
        errors.append(f"{candidate.spec.model_id}: {outcome}")
    raise ModelCallError("; ".join(errors))


def _selected(agent: AgentPlan, state: MoAState) -> AIMessage | None:
    """Return the aggregator's answer without a model call, or None to call the model."""
    if agent.tools:  # calls are voted on; any other answer is the bound aggregator's
        if agent.strategy == "synthesize":
            return None
        return voted_calls(references(agent, state), agent.tool_set)
    text = state["messages"][-1].text
    strategy = STRATEGIES[agent.strategy]
    return strategy.select(text, references(agent, state), agent.check_code)


def _finish(agent: AgentPlan, state: MoAState, reply: AIMessage) -> AIMessage:
    """Return the answer made of the model's reply (a ranker's pick, say).

    An aggregator that calls again the very calls whose results end the conversation
    makes no progress (the local 1.5B did so after the calculator's result): unless a
    call is required, the proposal most agreed with the others is the answer instead.
    """
    if agent.role != "aggregator":
        return reply
    refs = references(agent, state)
    free = agent.tool_set is not None and not agent.tool_set.required
    if refs and free and tool_text.repeats_last_calls(state["messages"], reply.tool_calls):
        text = state["messages"][-1].text
        chosen = consensus(text, refs)
        chosen.usage_metadata = reply.usage_metadata
        chosen.response_metadata["moa_repeated_call"] = True
        return chosen
    return STRATEGIES[agent.strategy].finish(reply, refs)


def _started(agent: AgentPlan, state: MoAState) -> float:
    """Check the previous layer, announce the agent, and return when it started."""
    check_layer(agent, state)
    writer = get_stream_writer()
    if agent.role == "aggregator":
        writer(AggregatorStarted(event="aggregator_started", **agent.info()))
        return time.perf_counter()
    if agent.index == 0:
        writer(
            LayerStarted(event="layer_started", moa_layer=agent.layer, moa_agents=[*agent.peers])
        )
    writer(AgentStarted(event="agent_started", **agent.info()))
    return time.perf_counter()


def _finished(
    agent: AgentPlan, state: MoAState, reply: AIMessage, started: float, cut: int
) -> dict[str, Any]:
    """Announce the agent's answer and return its state update."""
    usage = reply.usage_metadata or UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)
    latency = time.perf_counter() - started
    get_stream_writer()(
        AgentFinished(
            event="agent_finished",
            **agent.info(),
            latency_s=latency,
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            references_cut_tokens=cut,
        )
    )
    if agent.role == "aggregator":
        turn = user_turn(state["messages"])
        total = usage
        for proposal in state.get("proposals", []):
            if proposal.turn == turn:
                total = add_usage(total, proposal.usage)
        return {"messages": [reply], "usage": total}
    return _proposal(
        agent,
        state,
        content=reply.text,
        input_tokens=usage["input_tokens"],
        output_tokens=usage["output_tokens"],
        latency_s=latency,
        references_cut_tokens=cut,
    )


def _failed(agent: AgentPlan, state: MoAState, error: Exception, started: float) -> dict[str, Any]:
    """Record a proposer's failure as a proposal; an aggregator's ends the run."""
    if agent.role == "aggregator":
        raise ModelCallError(f"aggregator '{agent.name}' failed: {error}") from error
    get_stream_writer()(AgentFailed(event="agent_failed", **agent.info(), error=str(error)))
    latency = time.perf_counter() - started
    return _proposal(agent, state, content="", latency_s=latency, error=str(error))


def _proposal(agent: AgentPlan, state: MoAState, **record: Any) -> dict[str, Any]:
    """Return the state update that records a proposer's outcome."""
    proposal = Proposal(
        turn=user_turn(state["messages"]),
        layer=agent.layer,
        index=agent.index,
        agent=agent.name,
        model=agent.spec.model_id,
        **record,
    )
    return {"proposals": [proposal]}
