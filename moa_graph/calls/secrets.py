"""Secrets kept out of every text the library stores, logs, returns or traces.

API keys are read from the environment by name (a config names the variable, never
the key). A provider may still echo a key back, e.g. OpenAI's 401 message quotes a
masked key and other servers quote more; :func:`redact` replaces the value of every
key variable moa-graph knows of, wherever such text is about to leave a call:
error messages (:func:`moa_graph.calls.call.describe`, so proposals, checkpoints,
HTTP error bodies and command-line errors) and log records (:class:`RedactingFilter`).
A model may echo a key too (it was in its prompt, or a provider misbehaves): each
reply is redacted as it arrives (:func:`redact_data`, in :mod:`moa_graph.calls.replies`),
before it becomes a proposal, another agent's reference or the answer, and a streamed
answer through a :class:`StreamRedactor`, which holds back a piece that may be the start
of a key until the next piece tells. LangSmith traces get the same through the tracing
client's anonymizer (:func:`redact_traces`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, TypeVar

REDACTED = "[redacted]"
"""What a secret value is replaced with."""

_MIN_LENGTH = 6  # shorter values ("x", "local") would redact ordinary words
_names = {"MOA_API_KEY"}
_names_lock = threading.Lock()
_T = TypeVar("_T")


def register(*env_names: str) -> None:
    """Treat the values of these environment variables as secrets from now on."""
    with _names_lock:
        _names.update(env_names)


_values: set[str] = set()
"""Secrets given by value: keys read from a file rather than the environment."""


def register_value(value: str) -> None:
    """Treat ``value`` as a secret from now on, as a key variable's value is."""
    with _names_lock:
        _values.add(value)


def secret_values() -> list[str]:
    """Return the secret values set now, longest first (so none is cut by another)."""
    with _names_lock:
        names = list(_names)
        values = set(_values)
    values |= {os.environ.get(name, "") for name in names}
    return sorted((v for v in values if len(v) >= _MIN_LENGTH), key=len, reverse=True)


def redact(text: str) -> str:
    """Return ``text`` with every secret value replaced by ``[redacted]``."""
    for value in secret_values():
        text = text.replace(value, REDACTED)
    return text


def redact_data(value: _T) -> _T:
    """Return ``value`` with secrets redacted from every string in it, keys too.

    Strings, lists, tuples and dicts are rebuilt (redacted); other values are kept.
    """
    values = secret_values()
    redacted: _T = _redacted(value, values) if values else value
    return redacted


def _redacted(value: Any, values: list[str]) -> Any:
    if isinstance(value, str):
        for secret in values:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_redacted(k, values): _redacted(v, values) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redacted(item, values) for item in value)
    return value


def redact_traces() -> None:
    """Have LangSmith redact secrets from traces, when tracing is on.

    LangChain's tracer uploads each model run's output as it came back, before
    moa-graph redacts it. When tracing is on and LangSmith's shared client does not
    exist yet, it is made with :func:`redact_data` as its anonymizer, which LangSmith
    applies to every run's inputs, outputs and error before upload. A shared client
    that exists already (the application made one, or traced a run earlier) is kept as
    it is: give it ``anonymizer=redact_data`` for the same.
    """
    from langsmith import run_trees, utils

    if utils.tracing_is_enabled():
        run_trees.get_cached_client(anonymizer=redact_data)


class StreamRedactor:
    """Redacts secrets from text that arrives in pieces, such as a streamed answer.

    A secret may be split across pieces: the end of a piece that could be the
    start of a secret is held back until the next piece (or :meth:`flush`) tells.
    The secrets are those set when the redactor is made.

    Example:
        >>> redactor = StreamRedactor()
        >>> text = redactor.feed("a piece") + redactor.feed(" and the next") + redactor.flush()
    """

    def __init__(self) -> None:
        self._values = secret_values()
        self._held = ""

    def feed(self, piece: str) -> str:
        """Return the text of ``piece`` (and what was held) that can go out now."""
        if not self._values:
            return piece
        text: str = _redacted(self._held + piece, self._values)
        cut = len(text) - self._open_end(text)
        self._held = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        """Return what is held back: the text has ended, so it is no secret."""
        held, self._held = self._held, ""
        return held

    def _open_end(self, text: str) -> int:
        """Return the length of the longest end of ``text`` that starts a secret."""
        longest = 0
        for secret in self._values:
            start = max(len(text) - len(secret) + 1, 0)
            while (start := text.find(secret[0], start)) != -1:
                if secret.startswith(text[start:]):
                    longest = max(longest, len(text) - start)
                    break
                start += 1
        return longest


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets from a record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
