"""Durable runs: checkpointers that let a killed MoA run resume without paying twice.

LangGraph saves each node's output as soon as the node finishes; a run resumed on
the same thread skips every node whose output was saved. A proposer that already
answered is therefore never called again.

Example:
    >>> async with open_checkpointer("runs.sqlite") as saver:  # doctest: +SKIP
    ...     graph = create_moa("local").compile(checkpointer=saver)
    ...     await graph.ainvoke(None, thread_config("t1"))  # resume thread t1
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langchain_core.messages import AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph.state import CompiledStateGraph

from moa_graph.errors import ConfigError, InputError

CHECKPOINTS_ENV = "MOA_CHECKPOINTS"
"""Environment variable naming the default checkpoint store (path or DSN)."""

_POSTGRES_SCHEMES = ("postgres://", "postgresql://")

POSTGRES_CONNECT_TIMEOUT_S = 10
"""Seconds a PostgreSQL server may take to accept a new connection, unless the URL sets
``connect_timeout`` (psycopg alone would wait 130 s on a server that never answers)."""


def serializer() -> JsonPlusSerializer:
    """Return a checkpoint serializer that loads only known types.

    LangGraph's default loads any type found in a checkpoint, with a warning; this
    one loads LangChain's and LangGraph's own types, the graph's state types (added
    when a graph is compiled with it) and :class:`~moa_graph.graph.state.Proposal`.
    """
    return JsonPlusSerializer(allowed_msgpack_modules=[("moa_graph.graph.state", "Proposal")])


def default_checkpoints() -> str:
    """Return the default checkpoint store of the command line.

    ``$MOA_CHECKPOINTS`` when set, else ``moa-graph/checkpoints.sqlite`` under
    ``$XDG_STATE_HOME`` (``~/.local/state``).
    """
    if location := os.environ.get(CHECKPOINTS_ENV):
        return location
    return str(_own_checkpoints())


def _own_checkpoints() -> Path:
    """Return the checkpoint file moa-graph itself chooses: the one whose folder it creates."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "moa-graph" / "checkpoints.sqlite"


def thread_config(thread_id: str) -> RunnableConfig:
    """Return the run config of a thread.

    Raises:
        ConfigError: The thread id is empty.
    """
    if not thread_id.strip():
        raise ConfigError("the thread id is empty")
    return {"configurable": {"thread_id": thread_id}}


@asynccontextmanager
async def open_checkpointer(location: str | Path) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """Open an async checkpointer: SQLite for a path, PostgreSQL for a DSN.

    PostgreSQL needs ``pip install 'moa-graph[postgres]'``; its tables are created
    on first use.

    Args:
        location: A SQLite file path, or a ``postgresql://`` connection string. A
            missing SQLite file is created; its folder must exist, except the one
            :func:`default_checkpoints` picks under ``$XDG_STATE_HOME``.

    Yields:
        The checkpointer, open for the duration of the block.

    Raises:
        ConfigError: The location is empty, the PostgreSQL extra is not installed,
            the server cannot be reached or does not answer within its connect
            timeout, the SQLite file's folder does not exist, or the file cannot be
            opened and written.
    """
    location = str(location)
    if not location.strip():
        raise ConfigError(
            "the checkpoint location is empty: give a SQLite file path or a postgresql:// URL"
        )
    if location.startswith(_POSTGRES_SCHEMES):
        async with _open_postgres(location) as saver:
            yield saver
        return
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    folder = Path(location).parent
    if Path(location) == _own_checkpoints():
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        why = f"{folder} is not a folder" if folder.exists() else f"folder {folder} does not exist"
        raise ConfigError(f"cannot open checkpoint file {location}: {why}")
    try:  # first without aiosqlite, which leaves its thread behind when this fails
        sqlite3.connect(location).close()
    except sqlite3.Error as error:
        raise ConfigError(f"cannot open checkpoint file {location}: {error}") from None
    # Not AsyncSqliteSaver.from_conn_string: it closes the connection without waiting
    # for the saver's writes, and LangGraph can leave one under way after a run ends
    # (it saves a cancelled node's error from the node's done callback, once its run
    # no longer waits for writes). aiosqlite then closes the connection between the
    # write's INSERT and its commit, the commit and the cursor's close fail on the
    # closed connection, and SQLite keeps the connection, with its open transaction
    # and write lock, until that cursor is freed: the next opener of the file (the
    # resumed run) finds it locked. Every saver operation holds the saver's lock for
    # its whole transaction, so closing under the lock lets a write under way commit
    # first; a later one fails at once on the closed connection, before it writes.
    async with aiosqlite.connect(location) as connection:
        checkpointer = AsyncSqliteSaver(connection)
        try:
            await checkpointer.setup()  # creates the tables: fails now on a file it cannot write
        except sqlite3.Error as error:
            raise ConfigError(f"cannot open checkpoint file {location}: {error}") from None
        checkpointer.serde = serializer()
        try:
            yield checkpointer
        finally:
            async with checkpointer.lock:
                await connection.close()


@asynccontextmanager
async def _open_postgres(url: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """Open PostgreSQL checkpoints with a connect timeout.

    As ``AsyncPostgresSaver.from_conn_string`` does, which has none; a failure is a
    one-line error naming the server, never the password.

    Raises:
        ConfigError: The extra is not installed, the URL is invalid, or the server
            cannot be reached or does not answer within the connect timeout.
    """
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg import AsyncConnection, Error, errors
        from psycopg.conninfo import conninfo_to_dict, timeout_from_conninfo
        from psycopg.rows import dict_row
    except ImportError:
        raise ConfigError(
            "PostgreSQL checkpoints need: pip install 'moa-graph[postgres]'"
        ) from None
    try:
        params = conninfo_to_dict(url)
        params.setdefault("connect_timeout", POSTGRES_CONNECT_TIMEOUT_S)
        timeout = timeout_from_conninfo(params)  # as psycopg reads it: 2 s at least
    except Error:
        raise ConfigError("the PostgreSQL checkpoint URL is invalid") from None
    host, port = params.get("host") or "localhost", params.get("port") or 5432
    where = f"PostgreSQL checkpoints at {host}:{port}"
    try:
        connection = await AsyncConnection.connect(
            url,
            autocommit=True,
            prepare_threshold=0,
            row_factory=dict_row,
            connect_timeout=params["connect_timeout"],
        )
    except errors.ConnectionTimeout:
        raise ConfigError(
            f"cannot open {where}: no answer within the connect timeout of {timeout} s "
            "(connect_timeout in the URL sets it)"
        ) from None
    except Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"cannot open {where}: {reason}") from None
    async with connection:
        saver = AsyncPostgresSaver(conn=connection, serde=serializer())
        await saver.setup()
        yield saver


async def resume_input(
    graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str, messages: list[AnyMessage]
) -> tuple[dict[str, Any] | None, RunnableConfig]:
    """Return the input and config that start (``messages``) or resume (none) a thread.

    Raises:
        InputError: There is nothing to resume on the thread.
    """
    config = thread_config(thread_id)
    if messages:
        return {"messages": messages}, config
    snapshot = await graph.aget_state(config)
    if not snapshot.next:
        raise InputError(f"thread '{thread_id}' has no unfinished run to resume")
    return None, config
