"""Progress timeouts: telling a slow but live model from a stalled one.

An attempt of a call is timed by its tokens (:class:`Progress`): it is late when its
first token, or the next one, comes later than its settings allow, when it runs past
its overall limit, or past the layer's deadline. :func:`watch` cancels an async
attempt that is late; a sync one is ended by :class:`Progress` itself at its next token.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from typing import Any

from moa_graph.calls.replies import StreamedCalls
from moa_graph.config.call_settings import CallSettings


class DeadlinePassedError(Exception):
    """The layer's deadline passed during a call: not worth another attempt."""


class Progress(StreamedCalls):
    """Times the tokens of one attempt, to tell a slow model from a stalled one.

    Sync calls cannot be cancelled in-process, so there the handler itself ends a
    late attempt at its next token (``raise_error``); a stream that sends nothing
    more is ended by the client's read timeout. It also collects the streamed tool
    calls (:class:`~moa_graph.calls.replies.StreamedCalls`): one handler per attempt,
    as LangChain's dispatch of each token to a handler costs more than either's work.

    Args:
        settings: The limits of the attempt (its timeouts).
        deadline: The layer's deadline (``time.monotonic()``), if it has one.
        sync: Whether the attempt is a sync call.
    """

    raise_error = True
    run_inline = True  # a thread hop per token would cost more than the bookkeeping

    def __init__(self, settings: CallSettings, deadline: float | None, *, sync: bool) -> None:
        super().__init__()
        self.settings = settings
        self.started = time.monotonic()
        self.deadline = deadline
        self.sync = sync
        self.tokens = 0
        self.last_token: float | None = None

    def on_llm_new_token(self, token: str | list[str | dict[str, Any]], **kwargs: Any) -> None:
        """Count a token that shows something; end a late sync attempt; keep its tool calls."""
        self.last_token = time.monotonic()
        if token:  # role, finish and usage chunks show nothing
            self.tokens += 1
        if self.sync and (late := self.overdue(self.last_token)):
            raise self.late(late)
        super().on_llm_new_token(token, **kwargs)

    def late(self, reason: str) -> Exception:
        """Return the error for an attempt that is late for ``reason``."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return DeadlinePassedError(reason)
        return TimeoutError(reason)

    def due(self) -> float:
        """Return when the attempt is late if nothing more happens (monotonic)."""
        if self.last_token is None:
            lively = self.started + self.settings.first_token_timeout_s
        else:
            lively = self.last_token + self.settings.idle_timeout_s
        limits = [lively, self.started + self.settings.timeout_s]
        return min(limits if self.deadline is None else [*limits, self.deadline])

    def overdue(self, now: float) -> str | None:
        """Return why the attempt is late at ``now``, or None if it is not."""
        if now < self.due():
            return None
        if self.deadline is not None and now >= self.deadline:
            return "the layer deadline passed"
        if now >= self.started + self.settings.timeout_s:
            return f"no reply within {self.settings.timeout_s:g}s"
        if self.last_token is None:
            return f"no first token within {self.settings.first_token_timeout_s:g}s"
        return f"no token for {self.settings.idle_timeout_s:g}s"


def watches_tokens(settings: CallSettings) -> bool:
    """Whether an async attempt's limits need the timing of its tokens.

    A first-token or idle limit shorter than the overall one does. Without one, a
    streamed attempt fails only where a reply that comes back whole does.
    """
    return min(settings.first_token_timeout_s, settings.idle_timeout_s) < settings.timeout_s


async def watch(task: asyncio.Task[Any], progress: Progress) -> Any:
    """Await ``task``, cancelling it when the attempt stops making progress.

    A cancelled caller cancels it too: a client that hung up stops the upstream stream.
    """
    while True:
        timeout = max(progress.due() - time.monotonic(), 0.0)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if done:
            return task.result()
        if late := progress.overdue(time.monotonic()):
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            raise progress.late(late)
