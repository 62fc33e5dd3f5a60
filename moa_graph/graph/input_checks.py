"""Input checks: whether a conversation can be answered, before any model is called.

The graph runs them on the run's plan at its start (:mod:`moa_graph.graph.build`), and
the server and the command line run them before a run, so that bad input never
reaches a checkpointer.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AnyMessage, HumanMessage, ToolMessage

from moa_graph.errors import InputError
from moa_graph.graph.agent_prompt import fitted_prompt
from moa_graph.graph.plan import MoAPlan
from moa_graph.graph.state import MoAState

_CONTENT_INPUTS = {
    "image": "image_inputs",
    "image_url": "image_inputs",
    "audio": "audio_inputs",
    "input_audio": "audio_inputs",
    "file": "pdf_inputs",
    "video": "video_inputs",
}
"""The model profile field that says whether a model takes a kind of content."""


def check_conversation(messages: Sequence[AnyMessage]) -> None:
    """Check that a conversation can be answered, before any model is called.

    It ends with the user's message, or with the results of the tools the last
    answer called.

    Raises:
        InputError: The conversation is empty, ends with another kind of message,
            or its last user message is empty.
    """
    if not messages:
        raise InputError("the conversation is empty: send at least one user message")
    last = messages[-1]
    if isinstance(last, ToolMessage):
        return
    if not isinstance(last, HumanMessage):
        raise InputError(f"the last message must be from the user, not a {last.type} message")
    if not last.text.strip():
        raise InputError("the prompt is empty")


def check_plan(plan: MoAPlan, messages: Sequence[AnyMessage]) -> None:
    """Check that every agent of a plan can take the conversation, calling no model.

    Raises:
        InputError: The conversation is not answerable, holds content (e.g. images)
            an agent cannot take, or does not fit an agent's context window.
    """
    check_conversation(messages)
    kinds = {
        block.get("type", "?")
        for message in messages
        if isinstance(message.content, list)
        for block in message.content
        if isinstance(block, dict) and block.get("type") not in ("text", "reasoning")
    }
    state: MoAState = {"messages": list(messages), "proposals": []}  # type: ignore[typeddict-item]
    for agent in plan.agents():
        for candidate in agent.candidates:
            profile = getattr(candidate.model, "profile", None) or {}
            for kind in sorted(kinds):
                if not profile.get(_CONTENT_INPUTS.get(kind, f"{kind}_inputs")):
                    raise InputError(
                        f"the conversation has {kind} content, which agent "
                        f"'{candidate.spec.name}' ({candidate.spec.model_id}) cannot take"
                    )
            if candidate.prompt_budget is not None:  # no known window, nothing to overflow
                fitted_prompt(agent, candidate, state)
