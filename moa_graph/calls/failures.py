"""What a failed model call means: its HTTP status, whether to retry it, and why it failed."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time

from moa_graph.calls.secrets import redact

_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})


class EmptyReplyError(Exception):
    """A model answered with no text: treated as a transient failure."""


def status_code(error: BaseException) -> int | None:
    """Return the HTTP status an error carries, if any."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(error: BaseException) -> bool:
    """Whether a failed call is worth retrying.

    Rate limits, server errors, timeouts, dropped connections and replies that are
    garbled or empty are; authentication errors and invalid requests are not.
    """
    import openai

    if isinstance(error, asyncio.CancelledError):
        return False
    status = status_code(error)
    if status is not None and status >= 400:
        return status in _TRANSIENT_STATUS or status >= 500
    return isinstance(
        error,
        TimeoutError
        | ConnectionError
        | EmptyReplyError
        | json.JSONDecodeError
        | openai.APIConnectionError
        | openai.APIResponseValidationError,
    ) or type(error).__module__.startswith(("httpx", "httpcore"))


def retry_after(error: BaseException) -> float | None:
    """Return the seconds a ``Retry-After`` (or ``retry-after-ms``) header asks for."""
    headers = getattr(getattr(error, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(float(ms) / 1000, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def describe(error: BaseException) -> str:
    """Return a one-line reason for a failed call, without secrets or tracebacks."""
    status = status_code(error)
    text = redact(str(error)).splitlines()[0] if str(error) else ""
    if isinstance(error, TimeoutError):
        text = text or "timed out"
    name = type(error).__name__
    prefix = f"HTTP {status} {name}" if status and status >= 400 else name
    return f"{prefix}: {text}"[:300] if text else prefix
