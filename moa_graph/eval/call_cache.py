"""A call cache on disk, so that evaluation runs share and keep their repeatable calls.

``moa eval run`` keeps one per results directory: configurations run in separate
commands, or a run interrupted and started again, reuse the greedy and seeded calls
already paid for (see :func:`moa_graph.run.factory.create_moa`'s ``cache``).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core._api import LangChainBetaWarning
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import Serializable, dumps, loads
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation

# A cache file is data, not configuration: it may revive replies, never models.
_ALLOWED: list[type[Serializable]] = [
    Generation,
    ChatGeneration,
    ChatGenerationChunk,
    AIMessage,
    AIMessageChunk,
]

# The embedded runtime binds a port the operating system picks, new in every process;
# the same local model must hit the same entries whatever its port.
_LOOPBACK_PORT = re.compile(r"(https?://(?:127\.0\.0\.1|localhost|\[::1\])):\d+")
# Whether a reply was streamed does not change the reply.
_STREAM_FLAG = re.compile(r", \('stream', (?:True|False)\)")


def _key(prompt: str, llm_string: str) -> str:
    model = _STREAM_FLAG.sub("", _LOOPBACK_PORT.sub(r"\1", llm_string))
    return hashlib.sha256(f"{model}\x00{prompt}".encode()).hexdigest()


class SQLiteCallCache(BaseCache):
    """A LangChain cache in one SQLite file, safe to share between threads.

    Args:
        path: The database file; created with its table when missing (its folder
            must exist).

    Example:
        >>> cache = SQLiteCallCache(tmp_path / "calls.sqlite")  # doctest: +SKIP
        >>> graph = create_moa("local", cache=cache).compile()  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT)")

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Return the generations saved for this prompt and model, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM calls WHERE key = ?", (_key(prompt, llm_string),)
            ).fetchone()
        if row is None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LangChainBetaWarning)
            generations: Sequence[Any] = loads(row[0], allowed_objects=_ALLOWED)
        return generations

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Save the generations of a call."""
        value = dumps(list(return_val))
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO calls VALUES (?, ?)", (_key(prompt, llm_string), value)
            )

    def clear(self, **kwargs: Any) -> None:
        """Forget every saved call."""
        with self._lock:
            self._db.execute("DELETE FROM calls")
