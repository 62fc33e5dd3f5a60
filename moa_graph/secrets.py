"""Secrets kept out of every text the library stores, logs, returns or traces.

API keys are read from the environment by name (a config names the variable, never
the key). A provider may still echo a key back, e.g. OpenAI's 401 message quotes a
masked key and other servers quote more; :func:`redact` replaces the value of every
key variable moa-graph knows of, wherever such text is about to leave a call:
error messages (:func:`moa_graph.reliability.describe`, so proposals, checkpoints,
HTTP error bodies and command-line errors) and log records (:class:`RedactingFilter`).
"""

from __future__ import annotations

import logging
import os
import threading

REDACTED = "[redacted]"
"""What a secret value is replaced with."""

_MIN_LENGTH = 6  # shorter values ("x", "local") would redact ordinary words
_names = {"MOA_API_KEY"}
_names_lock = threading.Lock()


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
