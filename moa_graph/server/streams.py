"""Answering a ``moa serve`` run: server-sent events, and clients that go away."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from contextlib import suppress
from typing import Any, TypeVar

from starlette.requests import Request

from moa_graph.run.streaming import Event, Finished, Token
from moa_graph.server.errors import APIError, ClientGone
from moa_graph.server.runs import Run
from moa_graph.server.wire import ChatCompletionRequest, ChunkMaker, error_json
from moa_graph.server.wire_tools import tool_call_deltas

# The server's one logger, whose records ``serve`` redacts.
_log = logging.getLogger("moa_graph.server.app")
_T = TypeVar("_T")


async def stream_answer(
    request: Request, run: Run, body: ChatCompletionRequest, first: Event | None
) -> AsyncIterator[str]:
    """Stream the answer as server-sent events.

    Once the status line is sent, a failure can only be told in the stream: it
    ends with an OpenAI error event (no ``[DONE]``), which OpenAI clients raise.
    A client that goes away cancels the run, and so its model calls.
    """
    chunks = ChunkMaker(completion_id(), int(time.time()), body.model, body.include_usage)
    gone = asyncio.ensure_future(_disconnected(request))
    gone.add_done_callback(lambda task: None if task.cancelled() else run.cancel())
    streamed = False
    try:
        yield _sse(chunks.chunk({"role": "assistant", "content": ""}))
        event = first
        while event is not None:
            if isinstance(event, Token | Finished) and (error := run.broken()):
                raise error
            if isinstance(event, Token):
                streamed = True
                run.tokens += 1
                yield _sse(chunks.chunk({"content": event.text}))
            event = await run.next()
        if not streamed and run.answer:
            # A model that does not stream gives its whole answer at the end.
            yield _sse(chunks.chunk({"content": run.answer}))
        for end in _ending(run, body, chunks):
            yield _sse(end)
        yield "data: [DONE]\n\n"
    except ClientGone:
        _log.info("client went away; run cancelled")
    except APIError as error:
        _log.warning("stream ended with an error: %s", error)
        yield _sse(error.body)
    except Exception as error:
        _log.exception("streaming the answer failed")
        message = f"the MoA run failed: {type(error).__name__}"
        yield _sse(error_json(message, error_type="server_error"))
    finally:
        # No await here: when the client left, Starlette cancels this generator.
        gone.cancel()
        run.cancel()


def _ending(run: Run, body: ChatCompletionRequest, chunks: ChunkMaker) -> Iterator[dict[str, Any]]:
    """Yield the chunks after the answer's text: its tool calls, finish reason and usage.

    Tool calls go out once the aggregator's answer is whole (a retried or fallen
    back call cannot splice them), in the deltas the OpenAI API streams them in.
    """
    for delta in tool_call_deltas(run.tool_calls):
        yield chunks.chunk(delta)
    yield chunks.chunk({}, run.finish_reason)
    if body.include_usage or body.moa.include_proposals:
        last = chunks.chunk(None)
        if body.include_usage:
            last["usage"] = run.usage()
        if body.moa.include_proposals:
            last["moa"] = run.extension()
        yield last


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, _T]) -> _T:
    """Await ``work``, cancelling it if the client goes away first.

    A MoA run can take minutes; one nobody waits for should not hold a slot.

    Raises:
        ClientGone: The client disconnected; ``work`` was cancelled.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        _log.info("client went away; run cancelled")
        raise ClientGone
    return task.result()


def completion_id() -> str:
    """Return a new chat completion id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next message is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _sse(data: Mapping[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
