"""MoA with a human reviewer: approve the answer, edit it, or send it back.

After the aggregator, the ``review`` node pauses the run with ``interrupt()`` and
shows the answer. Resume it with ``Command(resume=...)`` and one of:

- ``{"action": "approve"}``: keep the answer;
- ``{"action": "edit", "answer": "..."}``: replace the answer's text;
- ``{"action": "revise", "comment": "..."}``: the comment joins the conversation and
  the MoA answers once more, its proposers seeing the rejected answer; then review
  again.

The graph needs a checkpointer to pause: ``langgraph dev`` brings one, and in Python
compile it with one, e.g. ``InMemorySaver()``.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from pydantic import BaseModel, ConfigDict, ValidationError

from graphs import served_graph
from graphs.served import around_moa
from moa_graph import InputError, MoAConfig, MoAState


class Review(BaseModel):
    """A reviewer's decision, the value a paused run is resumed with."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["approve", "edit", "revise"]
    answer: str | None = None
    comment: str | None = None


def parse_review(value: Any) -> Review:
    """Validate a resume value.

    Raises:
        InputError: The value is not a review, or lacks the answer or comment its
            action needs.
    """
    try:
        review = Review.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]  # one line, naming the field, as moa_graph's own errors
        field = ".".join(str(part) for part in first["loc"]) or "value"
        raise InputError(f"invalid review: {field}: {first['msg']}") from None
    if review.action == "edit" and not (review.answer or "").strip():
        raise InputError("an 'edit' review needs a non-empty 'answer'")
    if review.action == "revise" and not (review.comment or "").strip():
        raise InputError("a 'revise' review needs a non-empty 'comment'")
    return review


def review(state: MoAState) -> Command[Literal["moa", "__end__"]]:
    """Pause for the reviewer, then end, edit the answer, or go round once more."""
    answer = state["messages"][-1]
    assert isinstance(answer, AIMessage)
    decision = parse_review(
        interrupt({"answer": answer.text, "actions": ["approve", "edit", "revise"]})
    )
    if decision.action == "approve":
        return Command(goto=END)  # type: ignore[arg-type]  # END is typed str
    if decision.action == "edit":
        # Same id: add_messages replaces the answer instead of appending one.
        edited = AIMessage(decision.answer or "", id=answer.id, name=answer.name)
        return Command(goto=END, update={"messages": [edited]})  # type: ignore[arg-type]
    comment = HumanMessage(f"A reviewer sent the answer back: {decision.comment}")
    return Command(goto="moa", update={"messages": [comment]})


def build(config: MoAConfig | None = None) -> StateGraph[Any, Any, Any, Any]:
    """Build the graph; ``config`` replaces the served preset (tests pass fakes)."""
    reviewed = around_moa(config).add_node("review", review, metadata={"role": "human-review"})
    return reviewed.add_edge(START, "moa").add_edge("moa", "review")


make_graph = served_graph(build, "moa_with_review")
