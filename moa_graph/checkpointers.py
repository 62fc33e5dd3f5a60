"""Checkpointers named by a URL: ``memory``, ``sqlite:PATH`` or ``postgresql://...``.

Front ends (the server, the command line) take a checkpointer as one string; this
module turns it into an open LangGraph checkpointer. A PostgreSQL URL may hold a
password, so no error here ever repeats a URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from moa_graph.errors import ConfigError

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_USAGE = "use 'memory', 'sqlite:PATH' or a 'postgresql://' URL"


def check_checkpoint_url(url: str) -> None:
    """Check that a checkpointer URL is well-formed, without opening anything.

    Args:
        url: ``memory``, ``sqlite:PATH`` or ``postgresql://user:password@host/db``.

    Raises:
        ConfigError: The URL has an unknown form, or the SQLite file's folder does
            not exist.
    """
    if url == "memory" or url.startswith(_POSTGRES_SCHEMES):
        return
    if not url.startswith("sqlite:"):
        scheme = url.partition(":")[0] if ":" in url else url[:20]
        raise ConfigError(f"unknown checkpointer '{scheme}': {_USAGE}")
    path = Path(url.removeprefix("sqlite:"))
    if not path.name:
        raise ConfigError(f"'sqlite:' needs a file path, e.g. sqlite:runs.db ({_USAGE})")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot create checkpoint file {path}: folder {path.parent} is missing")


@asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Open the checkpointer a URL names, for the duration of the block.

    Args:
        url: ``memory`` (lost on exit), ``sqlite:PATH`` (a file, created when
            missing) or a PostgreSQL URL (tables created when missing; needs
            ``langgraph-checkpoint-postgres``).

    Yields:
        An async-capable checkpointer to compile graphs with.

    Raises:
        ConfigError: The URL is malformed or its backend is not installed.

    Example:
        >>> async with open_checkpointer("sqlite:runs.db") as saver:  # doctest: +SKIP
        ...     graph = create_moa("local-tiny").compile(checkpointer=saver)
    """
    check_checkpoint_url(url)
    if url == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
    elif url.startswith("sqlite:"):
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(url.removeprefix("sqlite:")) as sqlite:
            yield sqlite
    else:
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError:
            raise ConfigError(
                "a PostgreSQL checkpointer needs langgraph-checkpoint-postgres: "
                "pip install 'moa-graph[serve]'"
            ) from None
        async with AsyncPostgresSaver.from_conn_string(url) as postgres:
            await postgres.setup()
            yield postgres
