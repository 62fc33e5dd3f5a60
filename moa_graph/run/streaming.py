"""Streaming a MoA run as one sequence of typed events.

LangGraph streams progress (``custom``), tokens (``messages``) and state
(``values``) on separate modes; front ends (the command line, the server) want one
ordered sequence with the final answer's tokens already picked out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Durability, StreamMode

from moa_graph.calls.call import SHOWN_TAGS
from moa_graph.calls.secrets import StreamRedactor
from moa_graph.graph.build import AGGREGATOR_TAG
from moa_graph.graph.state import ProgressEvent


@dataclass(frozen=True)
class Progress:
    """A progress event a node emitted (see :data:`moa_graph.graph.state.ProgressEvent`)."""

    data: ProgressEvent


@dataclass(frozen=True)
class Token:
    """A piece of the aggregator's answer."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The run is over; ``state`` is the graph's final output."""

    state: dict[str, Any]


Event = Progress | Token | Finished


async def stream_moa(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    graph_input: dict[str, Any] | Any,
    config: RunnableConfig | None = None,
    *,
    context: Any = None,
    durability: Durability | None = None,
    tokens: bool = True,
) -> AsyncIterator[Event]:
    """Run a compiled MoA graph and yield its progress, answer tokens and result.

    Args:
        graph: A compiled graph from :func:`moa_graph.create_moa`.
        graph_input: The input, e.g. ``{"messages": [...]}``, or None to resume.
        config: The run's config (thread id, callbacks, tags).
        context: The run's context, for graphs with a ``context_schema``.
        durability: When a checkpointer saves ("sync" makes each finished node's
            output durable before the run goes on, so a killed run loses nothing).
        tokens: Whether the caller sends the answer's tokens on as they come (to
            a terminal, an SSE client): they then count as shown, and an answer
            whose stream breaks after one is not retried, as a retry's text would
            follow it. False, for a caller that wants the answer whole, yields no
            :class:`Token`: a broken stream is retried like any transient fault and
            the answer is the retry's alone. Proposers' tokens are never yielded,
            so they never count as shown.

    Yields:
        :class:`Progress` and :class:`Token` events as they happen, then one
        :class:`Finished` with the final state. Secret values are redacted from the
        tokens (:class:`~moa_graph.calls.secrets.StreamRedactor`): a token that may start
        one goes out with the next.
    """
    state: dict[str, Any] = {}
    redactor = StreamRedactor()
    modes: list[StreamMode] = ["custom", "messages", "values"] if tokens else ["custom", "values"]
    parts: AsyncIterator[tuple[str, Any]] = graph.astream(  # type: ignore[assignment]
        graph_input,
        answer_shown(config),
        context=context,
        stream_mode=modes,
        durability=durability,
    )
    async for mode, payload in parts:
        if mode == "custom":
            yield Progress(payload)
        elif mode == "messages":
            if text := redactor.feed(aggregator_text(payload)):
                yield Token(text)
        else:
            state = payload
    if rest := redactor.flush():
        yield Token(rest)
    yield Finished(state)


def answer_shown(config: RunnableConfig | None) -> RunnableConfig:
    """Return ``config`` for a run whose caller shows the aggregator's tokens only.

    Under ``stream_mode="messages"`` every streamed call's tokens would count as shown,
    so a proposer whose stream broke would not be retried, though nobody saw its text.
    """
    config = config or {}
    shown = {SHOWN_TAGS: (AGGREGATOR_TAG,)}
    return {**config, "configurable": {**config.get("configurable", {}), **shown}}


def aggregator_text(payload: Any) -> str:
    """Return the text of a ``messages``-mode chunk of the aggregator's call, or ``""``."""
    chunk, metadata = payload
    if isinstance(chunk, AIMessageChunk) and AGGREGATOR_TAG in metadata.get("tags", ()):
        return chunk.text
    return ""
