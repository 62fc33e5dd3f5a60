"""Reliable model calls: retries, progress timeouts and rate limits.

A MoA run makes many calls; each goes through :func:`acall` (or :func:`call`),
which waits for the provider's rate limit, bounds every attempt by a timeout,
retries transient failures (429, 5xx, timeouts, dropped connections, garbled or
empty replies) with exponential backoff and full jitter, honours ``Retry-After``,
and fails at once on anything else (bad key, invalid request). Retrying is done
here rather than in each provider's client so that it is the same for every
provider and for model instances, and covers replies a client accepts as valid
(an empty message). How an attempt's progress is timed is :mod:`moa_graph.calls.progress`.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.tracers._streaming import _StreamingCallbackHandler
from langgraph.constants import TAG_NOSTREAM
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
)

from moa_graph.calls import replies
from moa_graph.calls.failures import EmptyReplyError, describe, is_transient, retry_after
from moa_graph.calls.progress import Progress, watch, watches_tokens
from moa_graph.config.call_settings import CallSettings
from moa_graph.errors import ModelCallError, StreamInterruptedError

SHOWN_TAGS = "moa_shown_tags"
"""Run config key (in ``configurable``): the tags of the calls whose tokens the caller
shows, e.g. ``(AGGREGATOR_TAG,)``. A caller that streams ``messages`` but shows only
some of them sets it; the other calls' tokens then count as never shown, so a broken
stream of theirs is retried. Without it, every streamed call's tokens count as shown."""

_limiters: dict[tuple[str, float], InMemoryRateLimiter] = {}
_limiters_lock = threading.Lock()


@dataclass(frozen=True)
class CallPolicy:
    """How one agent's calls are made.

    Attributes:
        settings: The config's call settings with the agent's own timeout and retries
            (:meth:`~moa_graph.config.call_settings.CallSettings.for_agent`).
        rate_limiter: The provider's shared limiter, if it has a rate limit.
    """

    settings: CallSettings
    rate_limiter: InMemoryRateLimiter | None = None


def rate_limiter(provider: str, requests_per_second: float) -> InMemoryRateLimiter:
    """Return the process-wide limiter of a provider at a given rate."""
    with _limiters_lock:
        key = (provider, requests_per_second)
        if key not in _limiters:
            _limiters[key] = InMemoryRateLimiter(
                requests_per_second=requests_per_second,
                check_every_n_seconds=min(0.05, 0.1 / requests_per_second),
                max_bucket_size=1,
            )
        return _limiters[key]


def _wait(settings: CallSettings) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        doubled = settings.backoff_s * 2 ** (state.attempt_number - 1)
        ceiling = min(settings.max_backoff_s, doubled)
        backoff = random.uniform(0, ceiling)
        error = state.outcome.exception() if state.outcome else None
        after = retry_after(error) if error else None
        return backoff if after is None else max(after, backoff)

    return wait


def _retrying(settings: CallSettings, cls: type[Any]) -> Any:
    def stop(state: RetryCallState) -> bool:
        if state.attempt_number > settings.max_retries:
            return True
        error = state.outcome.exception() if state.outcome else None
        after = retry_after(error) if error else None
        return after is not None and after > settings.max_retry_after_s

    return cls(
        retry=retry_if_exception(is_transient),
        stop=stop,
        wait=_wait(settings),
        reraise=True,
    )


class StreamBrokenError(Exception):
    """A call failed after its tokens reached a streaming caller: never retried.

    A retry cannot take back text already shown, and its own text would follow it.
    """


def _streams_to_caller(config: RunnableConfig, merged: RunnableConfig) -> bool:
    """Whether this call's tokens reach a caller that shows them as they come.

    They do under ``stream_mode="messages"`` (or ``astream_events``) unless the call
    is tagged ``nostream`` or the run's :data:`SHOWN_TAGS` leave it out. ``merged``
    is ``config`` merged with the caller's (:func:`ensure_config`).
    """
    tags = [*(config.get("tags") or []), *merged.get("tags", [])]
    if TAG_NOSTREAM in tags:
        return False
    shown = merged.get("configurable", {}).get(SHOWN_TAGS)
    if shown is not None and not set(shown) & set(tags):
        return False
    callbacks = merged.get("callbacks")
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else callbacks
    # The test LangChain itself uses to decide whether a call streams.
    return any(isinstance(h, _StreamingCallbackHandler) for h in handlers or [])


def _streaming(model: Runnable[Any, Any], *, stream: bool = True) -> dict[str, Any]:
    """Return the call arguments that make a model stream, with its token usage.

    With ``stream`` False, ``stream=False``, LangChain's own opt-out: without it a
    streaming handler in the callbacks (LangGraph's ``messages`` one, which ignores a
    ``TAG_NOSTREAM`` call) makes LangChain stream anyway. A model set to stream by
    itself (``streaming=True``) still does, asked for its usage as well.
    """
    if not stream and getattr(model, "streaming", False) is not True:
        return {"stream": False}
    # An OpenAI-family instance given in a config reports usage while streaming only
    # when asked; the clients moa-graph builds itself are built asking.
    if hasattr(model, "stream_usage") and not model.stream_usage:
        return {"stream": True, "stream_usage": True}
    return {"stream": True}


def _checked(reply: Any, streamed: replies.StreamedCalls) -> AIMessage:
    """Return the reply as :func:`moa_graph.calls.replies.checked` does, refusing an empty one."""
    if not isinstance(reply, AIMessage):
        raise TypeError(f"a chat model returned {type(reply).__name__}, not an AIMessage")
    checked = replies.checked(reply, streamed)
    if not checked.text.strip() and not checked.tool_calls:
        raise EmptyReplyError("the model returned an empty reply")
    return checked


def _with_handlers(
    config: RunnableConfig, merged: RunnableConfig, *handlers: BaseCallbackHandler
) -> RunnableConfig:
    """Return ``config`` with the caller's callbacks (from ``merged``) and ``handlers``."""
    callbacks = merged.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        callbacks = callbacks.copy()
        for handler in handlers:
            callbacks.add_handler(handler, inherit=False)
    else:
        callbacks = [*(callbacks or []), *handlers]
    return {**config, "callbacks": callbacks}


def _broken(error: Exception, progress: Progress, visible: bool) -> Exception:
    """Return the error to raise for a failed attempt: unretryable once tokens were shown."""
    if visible and progress.tokens:
        return StreamBrokenError(
            f"the answer broke off after {progress.tokens} streamed tokens "
            f"({describe(error)}); not retried, as they were already shown"
        )
    return error


def _failed(error: Exception) -> ModelCallError:
    """Return the error a call that failed for good raises."""
    if isinstance(error, StreamBrokenError):
        return StreamInterruptedError(describe(error))
    return ModelCallError(describe(error))


@dataclass(frozen=True)
class Call:
    """One model call to make: the model, its prompt, its run config and its policy."""

    model: Runnable[Any, Any]
    messages: Sequence[BaseMessage]
    config: RunnableConfig
    policy: CallPolicy


async def acall(request: Call, *, deadline: float | None = None) -> AIMessage:
    """Make a call with its policy's rate limit, progress timeouts and retries.

    The model streams when a caller streams its tokens or when the policy's progress
    limits need them: an attempt fails when its first token, or the next one, is
    later than the policy allows, or when it runs past its overall limit or
    ``deadline`` (``time.monotonic()``). A slow but live stream is never cut short.
    An attempt that fails after its tokens reached a streaming caller is not retried.

    Raises:
        ModelCallError: The call failed for good; the message says why.
    """
    policy, merged = request.policy, ensure_config(request.config)
    visible = _streams_to_caller(request.config, merged)
    arguments = _streaming(request.model, stream=visible or watches_tokens(policy.settings))

    async def attempt() -> AIMessage:
        if policy.rate_limiter:
            await policy.rate_limiter.aacquire()
        progress = Progress(policy.settings, deadline, sync=False)
        config = _with_handlers(request.config, merged, progress)
        call = request.model.ainvoke(list(request.messages), config, **arguments)
        try:
            return _checked(await watch(asyncio.ensure_future(call), progress), progress)
        except Exception as error:
            raise _broken(replies.explained(error), progress, visible) from error

    try:
        reply: AIMessage = await _retrying(policy.settings, AsyncRetrying)(attempt)
    except Exception as error:
        raise _failed(error) from error
    return reply


def call(request: Call, *, deadline: float | None = None) -> AIMessage:
    """Make a call synchronously, as :func:`acall` does.

    A sync call cannot be cancelled: a late attempt ends at its next token, and a
    stream that stalls ends at the client's read timeout (``first_token_timeout_s``, see
    :func:`moa_graph.graph.clients.resolve_model`). So it always streams.

    Raises:
        ModelCallError: The call failed for good; the message says why.
    """
    policy, merged = request.policy, ensure_config(request.config)
    visible = _streams_to_caller(request.config, merged)
    arguments = _streaming(request.model)

    def attempt() -> AIMessage:
        if policy.rate_limiter:
            policy.rate_limiter.acquire()
        progress = Progress(policy.settings, deadline, sync=True)
        config = _with_handlers(request.config, merged, progress)
        try:
            # A reply that came back whole is kept, even if it ended past a limit.
            reply = request.model.invoke(list(request.messages), config, **arguments)
            return _checked(reply, progress)
        except Exception as error:
            raise _broken(replies.explained(error), progress, visible) from error

    try:
        return _retrying(policy.settings, Retrying)(attempt)  # type: ignore[no-any-return]
    except Exception as error:
        raise _failed(error) from error
