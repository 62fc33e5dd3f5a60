"""One ``moa serve`` request's MoA run: a task of its own, read event by event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, BaseMessage
from langchain_core.runnables import RunnableConfig

from moa_graph.calls.failures import describe
from moa_graph.calls.replies import ChunkReader
from moa_graph.errors import InputError, MoAError, ModelCallError
from moa_graph.graph.build import AGGREGATOR_TAG
from moa_graph.graph.plan import RunOptions
from moa_graph.graph.state import AgentFinished
from moa_graph.run.streaming import Event, Finished, Progress, Token, stream_moa
from moa_graph.server.errors import APIError, ClientGone
from moa_graph.server.served import ServedModel
from moa_graph.server.wire import moa_extension, usage_json
from moa_graph.server.wire_tools import tool_calls_json

THREAD_HEADER = "X-MoA-Thread-Id"
"""Response header naming the run's thread id when the server checkpoints."""

_FINISH_REASONS = frozenset({"stop", "length", "content_filter"})

# The server's one logger, whose records ``serve`` redacts.
_log = logging.getLogger("moa_graph.server.app")


class _Cancelled:
    """Queued when a run was cancelled."""


class _AggregatorWatch(ChunkReader):
    """Sees the aggregator's model calls, to tell when its streamed answer broke.

    A call that fails after it streamed text, or a new call (a retry, a fallback)
    after text went out, means the text already sent is not the start of the
    answer: the stream must end in an error, never splice two attempts.

    Attributes:
        streamed: Pieces of answer text the aggregator's calls streamed so far.
        broken_after: ``streamed`` when the answer first broke after text went
            out; None while it has not.
        reason: Why it broke, in one line.
    """

    def __init__(self) -> None:
        self.calls: set[UUID] = set()
        self.streamed = 0
        self.broken_after: int | None = None
        self.reason = ""

    def _break(self, reason: str) -> None:
        if self.broken_after is None and self.streamed:
            self.broken_after = self.streamed
            self.reason = reason

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if AGGREGATOR_TAG in (tags or ()):
            self._break("its call was made again after the answer had started")
            self.calls.add(run_id)

    def on_chunk(self, message: AIMessageChunk, run_id: UUID) -> None:
        if run_id in self.calls and message.text:
            self.streamed += 1

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if run_id in self.calls:
            self._break(describe(error))


class Run:
    """One request's MoA run, going on in its own task, read event by event.

    The run is a task of its own so that cancelling it (the client went away)
    is plain asyncio cancellation, which LangGraph passes on to every model call
    under way; the task ends, and calls ``on_end``, only once they have stopped.
    ``tokens`` says whether the client gets the answer token by token; without, no
    token counts as shown and a broken upstream stream is retried (see
    :func:`~moa_graph.run.streaming.stream_moa`).
    """

    def __init__(
        self,
        options: RunOptions,
        messages: list[AnyMessage],
        served: ServedModel,
        thread_id: str | None,
        on_end: Callable[[], None],
        *,
        tokens: bool = True,
    ) -> None:
        self.served = served
        self.thread_id = thread_id
        self.watch = _AggregatorWatch()
        config: RunnableConfig = {
            "run_name": f"moa serve {served.name}",
            "metadata": {"moa_served_model": served.name},
            "callbacks": [self.watch],
        }
        if thread_id is not None:
            config["configurable"] = {"thread_id": thread_id}
        self.failed_agents: list[str] = []
        self.aggregator: AgentFinished | None = None
        self.state: dict[str, Any] = {}
        self.tool_calls: list[dict[str, Any]] = []  # the answer's, in the OpenAI format
        self.tokens = 0
        self._ended = False
        self._queue: asyncio.Queue[Event | BaseException | _Cancelled | None] = asyncio.Queue()
        events = stream_moa(
            served.graph, {"messages": messages}, config, context=options, tokens=tokens
        )
        self._task = asyncio.create_task(self._produce(events), name=f"moa run {served.name}")
        self._task.add_done_callback(lambda _: on_end())

    async def _produce(self, events: AsyncIterator[Event]) -> None:
        try:
            async for event in events:
                self._queue.put_nowait(event)
        except asyncio.CancelledError:
            self._queue.put_nowait(_Cancelled())
            raise
        except Exception as error:
            self._queue.put_nowait(error)
        else:
            self._queue.put_nowait(None)

    async def next(self) -> Event | None:
        """Return the next event, or None at the end.

        Raises:
            APIError: The run failed: 400 for bad input, 502 naming the failing
                agents when too few agents answered, 500 otherwise.
            ClientGone: The run was cancelled.
        """
        if self._ended:
            return None
        item = await self._queue.get()
        if item is None or isinstance(item, BaseException | _Cancelled):
            self._ended = True
        if isinstance(item, _Cancelled):
            raise ClientGone
        if isinstance(item, BaseException):
            raise self._api_error(item)
        if isinstance(item, Progress):
            data = item.data
            if data["event"] == "agent_failed":
                self.failed_agents.append(data["moa_agent"])
            elif data["event"] == "agent_finished" and data["moa_role"] == "aggregator":
                self.aggregator = data
        elif isinstance(item, Finished):
            self.state = item.state
            messages = self.state.get("messages") or []
            if messages and isinstance(messages[-1], AIMessage):
                self.tool_calls = tool_calls_json(messages[-1])
        return item

    async def finish(self) -> None:
        """Run to the end."""
        while await self.next() is not None:
            pass

    async def first_token(self) -> Event | None:
        """Run until the answer starts, so a failure before it is a plain HTTP error."""
        while True:
            event = await self.next()
            if event is None or isinstance(event, Token | Finished):
                return event

    def _api_error(self, error: BaseException) -> APIError:
        if isinstance(error, InputError):
            return APIError(400, _one_line(str(error)), headers=self.headers())
        if isinstance(error, MoAError):
            # The core's messages name each failed agent and why, without secrets.
            # Proposers' failures arrive as events; one that escapes is the aggregator's.
            if isinstance(error, ModelCallError):
                self.failed_agents.append(self.served.config.aggregator.name or "")
            _log.warning("upstream failure: %s", error)
            return APIError(
                502,
                _one_line(f"upstream failure: {error}"),
                error_type="upstream_error",
                code="agents_failed",
                failed_agents=list(dict.fromkeys(self.failed_agents)),
                headers=self.headers(),
            )
        _log.error("MoA run failed", exc_info=error)
        return APIError(
            500,
            f"the MoA run failed: {type(error).__name__}",
            error_type="server_error",
            headers=self.headers(),
        )

    def broken(self) -> APIError | None:
        """Return the error to end a stream with if the next token would splice.

        The aggregator's answer broke after some of it streamed: the tokens up to
        that point may go out, no token after them.
        """
        broken_after = self.watch.broken_after
        if broken_after is None or self.tokens < broken_after:
            return None
        name = self.served.config.aggregator.name or "aggregator"
        return APIError(
            502,
            _one_line(
                f"aggregator '{name}' failed after its answer had started: {self.watch.reason}"
            ),
            error_type="upstream_error",
            code="stream_interrupted",
        )

    def cancel(self) -> None:
        """Stop the run if it is still going (the client went away)."""
        self._task.cancel()

    async def close(self) -> None:
        """Stop the run if it is still going, and wait until it has stopped."""
        self._task.cancel()
        await asyncio.wait({self._task})

    def headers(self) -> dict[str, str]:
        """Return the response headers naming the run's thread, if it has one."""
        return {THREAD_HEADER: self.thread_id} if self.thread_id else {}

    @property
    def answer(self) -> str:
        """The answer's text, once the run finished; empty before."""
        messages = self.state.get("messages") or []
        return str(messages[-1].text) if messages else ""

    @property
    def finish_reason(self) -> str:
        """Why the answer ended, as OpenAI names it; ``stop`` when unknown."""
        if self.tool_calls:
            return "tool_calls"
        messages = self.state.get("messages") or []
        reason = messages[-1].response_metadata.get("finish_reason") if messages else None
        return reason if reason in _FINISH_REASONS else "stop"

    def extension(self) -> dict[str, Any]:
        """Return the ``moa`` extension field: proposals, each agent's usage, an early exit."""
        extension = moa_extension(self.state.get("proposals", []), self.aggregator, self.thread_id)
        if self.state.get("exit"):
            extension["exit"] = dict(self.state["exit"])
        return extension

    def usage(self) -> dict[str, Any]:
        """Return the run's token usage in the OpenAI format."""
        return usage_json(self.state.get("usage") or {})


def _one_line(message: str, limit: int = 500) -> str:
    """Return the first line of ``message``, at most ``limit`` characters."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."
