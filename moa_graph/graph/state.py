"""Graph state (the conversation, the turn's proposals, usage) and progress events.

The nodes write the events of :data:`ProgressEvent` to ``stream_mode="custom"``; the
command line, the server and the display read them by their ``event`` field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langgraph.graph import MessagesState
from langgraph.graph.message import add_messages
from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict


class Proposal(BaseModel):
    """One proposer's response to the latest user turn.

    Attributes:
        turn: Which user turn of the conversation it answers (1 for the first).
        layer: The proposer layer, from 1.
        index: The agent's position in its layer, from 0.
        agent: The agent's name.
        model: The agent's model.
        content: The response text.
        input_tokens: Prompt tokens the model reported.
        output_tokens: Completion tokens the model reported.
        latency_s: Wall time of the model call, in seconds.
        error: Why the agent failed (after its retries), or None if it answered;
            a failed proposal's content is empty and no later agent sees it.
        references_cut_tokens: Tokens cut from the references this agent received
            to fit its context window (0 when nothing was cut).
    """

    model_config = ConfigDict(frozen=True)

    turn: int
    layer: int
    index: int
    agent: str
    model: str
    content: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    references_cut_tokens: int = 0

    @property
    def ok(self) -> bool:
        """Whether the agent answered."""
        return self.error is None

    @property
    def usage(self) -> UsageMetadata:
        """The call's token usage in LangChain's form."""
        return UsageMetadata(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.input_tokens + self.output_tokens,
        )


def merge_proposals(
    existing: Sequence[Proposal] | None, new: Sequence[Proposal] | None
) -> list[Proposal]:
    """Reducer of ``proposals``: keep the latest turn's, ordered by layer and agent.

    Parallel agents finish in any order; sorting by ``(layer, index)`` makes the
    result independent of it. A proposal for a newer turn drops the older turn's,
    so a thread's state holds the proposals behind its latest answer only.
    """
    merged = {(p.turn, p.layer, p.index): p for p in [*(existing or ()), *(new or ())]}
    if not merged:
        return []
    latest = max(turn for turn, _, _ in merged)
    return sorted(
        (p for (turn, _, _), p in merged.items() if turn == latest),
        key=lambda p: (p.layer, p.index),
    )


def user_turn(messages: Sequence[AnyMessage]) -> int:
    """Return how many user messages the conversation holds."""
    return sum(isinstance(m, HumanMessage) for m in messages)


class RunExit(TypedDict):
    """Where and why a turn left its stack of layers early (``exit`` in the state).

    Attributes:
        turn: The user turn it is about (1 for the first).
        layer: The proposer layer whose proposals decided it, from 1.
        stage: The stage of that layer that decided it, from 1 (1 when unstaged).
        action: ``answer``: the proposals agreed, so the most agreed one is the
            answer and the later stages, layers and the aggregator were skipped;
            ``aggregate``: the layer no longer changed the answer of the one before,
            so the later layers were skipped and the aggregator ran on this one.
        chosen: The agreed proposal's index in its layer (``answer``), else None.
        reason: One line, e.g. ``2 of 2 proposals state the answer 42``.
    """

    turn: int
    layer: int
    stage: int
    action: Literal["answer", "aggregate"]
    chosen: int | None
    reason: str


class MoAInput(TypedDict):
    """What a MoA graph takes: a conversation, as in LangGraph's ``MessagesState``."""

    messages: Annotated[list[AnyMessage], add_messages]


class MoAOutput(MoAInput):
    """What a MoA graph returns.

    Attributes:
        messages: The conversation with the aggregator's answer appended.
        proposals: Every proposer's response to the latest turn.
        usage: Tokens of every call of the latest turn, aggregator included.
        exit: Where and why the latest turn left its layers early, or None; only
            graphs whose config sets ``early_exit`` write it.
    """

    proposals: list[Proposal]
    usage: UsageMetadata
    exit: RunExit | None


class MoAState(MessagesState):
    """The full state of a MoA graph."""

    proposals: Annotated[list[Proposal], merge_proposals]
    usage: UsageMetadata
    exit: RunExit | None


class AgentInfo(TypedDict):
    """Who an agent event is about (also the metadata of the agent's model call).

    Attributes:
        moa_role: ``proposer`` or ``aggregator``.
        moa_layer: The proposer layer, from 1; the aggregator's is the number of
            proposer layers plus one.
        moa_agent: The agent's name.
        moa_model: The agent's model.
        moa_preset: The preset's name, if the config came from one.
    """

    moa_role: Literal["proposer", "aggregator"]
    moa_layer: int
    moa_agent: str
    moa_model: str
    moa_preset: str | None


class LayerStarted(TypedDict):
    """A proposer layer began; ``moa_agents`` names its agents in order."""

    event: Literal["layer_started"]
    moa_layer: int
    moa_agents: list[str]


class AgentStarted(AgentInfo):
    """A proposer began its call."""

    event: Literal["agent_started"]


class AggregatorStarted(AgentInfo):
    """The aggregator began (a strategy without a model call finishes at once)."""

    event: Literal["aggregator_started"]


class AgentFinished(AgentInfo):
    """An agent answered: wall time, the tokens its call reported, references cut."""

    event: Literal["agent_finished"]
    latency_s: float
    input_tokens: int
    output_tokens: int
    references_cut_tokens: int


class AgentFailed(AgentInfo):
    """A proposer failed after its retries; ``error`` says why (secrets redacted)."""

    event: Literal["agent_failed"]
    error: str


class ExitedEarly(TypedDict):
    """A layer or a stage ended the stack early; the fields are those of :class:`RunExit`."""

    event: Literal["early_exit"]
    moa_layer: int
    moa_stage: int
    moa_action: Literal["answer", "aggregate"]
    moa_chosen: int | None
    moa_reason: str


ProgressEvent = (
    LayerStarted | AgentStarted | AggregatorStarted | AgentFinished | AgentFailed | ExitedEarly
)
"""What a MoA graph writes to ``stream_mode="custom"``; ``event`` tells them apart."""
