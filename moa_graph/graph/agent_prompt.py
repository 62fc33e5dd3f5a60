"""What one agent receives: the conversation and the previous layer's references.

The aggregation strategy writes the messages (:mod:`moa_graph.strategies.aggregation`);
this module gathers the references of the latest turn, adds what the agent must know
of the run's tools, and cuts the references to each candidate model's window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_core.messages import BaseMessage, SystemMessage

from moa_graph.calls.budget import fit_references
from moa_graph.graph.plan import AgentPlan, Candidate
from moa_graph.graph.state import MoAState, user_turn
from moa_graph.strategies import tool_text
from moa_graph.strategies.aggregation import STRATEGIES


def references(agent: AgentPlan, state: MoAState) -> list[str]:
    """Return the previous layer's responses to the latest turn."""
    turn = user_turn(state["messages"])
    return [
        p.content
        for p in state.get("proposals", [])
        if p.turn == turn and p.layer == agent.layer - 1 and p.ok
    ]


def prompt(
    agent: AgentPlan, state: MoAState, refs: Sequence[str] | None = None
) -> list[BaseMessage]:
    """Return the messages the agent receives: the conversation and its references."""
    refs = references(agent, state) if refs is None else refs
    return _builder(agent, agent.spec.system_prompt, state)(refs)


def fitted_prompt(
    agent: AgentPlan, candidate: Candidate, state: MoAState
) -> tuple[list[BaseMessage], int]:
    """Return the prompt for one candidate model, references cut to its window, and the cut."""
    build = _builder(agent, candidate.spec.system_prompt, state)
    return fit_references(
        build, references(agent, state), candidate.prompt_budget, agent=agent.name
    )


def _builder(
    agent: AgentPlan, system_prompt: str | None, state: MoAState
) -> Callable[[Sequence[str]], list[BaseMessage]]:
    """Return what builds the agent's prompt from its references.

    With tools bound, proposers get the conversation as plain text and a note on the
    tools; the aggregator, bound to them, gets the conversation as it is and a note
    after the references that it may call them.
    """
    conversation: Sequence[BaseMessage] = state["messages"]
    if agent.tools and agent.role == "proposer":
        conversation = tool_text.as_text(conversation)
        note = tool_text.describe_tools(agent.tools)
        system_prompt = f"{system_prompt}\n\n{note}" if system_prompt else note
    build = STRATEGIES[agent.strategy].messages
    if agent.tool_set is None or agent.role != "aggregator":
        return lambda refs: build(conversation, refs, system_prompt, agent.aggregate_prompt)

    def noted(refs: Sequence[str]) -> list[BaseMessage]:
        messages = build(conversation, refs, system_prompt, agent.aggregate_prompt)
        if refs and isinstance(messages[0], SystemMessage):
            messages[0] = SystemMessage(messages[0].text + tool_text.AGGREGATOR_TOOLS_NOTE)
        return messages

    return noted
