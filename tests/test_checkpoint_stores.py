"""Checkpoint stores under faults: a write still under way when its checkpointer closes
(a cancelled run), a PostgreSQL server that never answers, an empty location."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from moa_graph.errors import ConfigError
from moa_graph.run import checkpoints as durable
from moa_graph.run.checkpoints import open_checkpointer
from tests.test_cli import moa as run_moa


def _locked(path: Path) -> bool:
    """Whether another connection is kept from writing ``path`` right now."""
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.rollback()
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        other.close()


async def test_a_write_under_way_when_the_checkpointer_closes_leaves_the_file_unlocked(
    tmp_path: Path,
) -> None:
    # What a cancelled run leaves: LangGraph saves a cancelled node's error from the
    # node's done callback, after its run stopped waiting for its writes, so the write
    # is still under way when the caller's block ends and closes the connection.
    path = tmp_path / "runs.sqlite"
    inside, release = threading.Event(), threading.Event()
    armed = False

    def hold_the_insert() -> int:  # SQLite's progress handler, in aiosqlite's thread
        nonlocal armed
        if armed:
            armed = False
            inside.set()
            release.wait()
        return 0

    block = open_checkpointer(path)
    saver = await block.__aenter__()
    await saver.conn.set_progress_handler(hold_the_insert, 1)
    armed = True
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c"}}
    write = asyncio.create_task(saver.aput_writes(config, [("x", 1)], "task"))
    while not inside.is_set():  # the INSERT is running in the connection's thread
        await asyncio.sleep(0.001)
    closing = asyncio.create_task(block.__aexit__(None, None, None))
    for _ in range(10):  # the block's end has reached its first wait
        await asyncio.sleep(0)
    release.set()
    await closing
    await asyncio.wait({write})
    assert not _locked(path)  # the write task (and its cursor) is still referenced here
    async with open_checkpointer(path) as reopened:  # the resumed run's first write
        await reopened.aput_writes(config, [("y", 2)], "task2")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word."""
    held: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def accept() -> None:
            with contextlib.suppress(OSError):  # the listener closed
                while True:
                    held.append(listener.accept()[0])

        threading.Thread(target=accept, daemon=True).start()
        yield listener.getsockname()[1]
        listener.shutdown(socket.SHUT_RDWR)
    for connection in held:
        connection.close()


async def test_a_postgres_server_that_never_answers_fails_at_the_connect_timeout(
    silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "POSTGRES_CONNECT_TIMEOUT_S", 2)
    started = time.monotonic()
    with pytest.raises(ConfigError) as failure:
        async with open_checkpointer(f"postgresql://moa:pw-0123@127.0.0.1:{silent_server}/db"):
            pass
    assert time.monotonic() - started < 10
    assert str(failure.value) == (
        f"cannot open PostgreSQL checkpoints at 127.0.0.1:{silent_server}: no answer within "
        "the connect timeout of 2 s (connect_timeout in the URL sets it)"
    )


def test_moa_ask_names_the_connect_timeout_of_a_silent_postgres_server(
    silent_server: int, tmp_path: Path
) -> None:
    url = f"postgresql://moa:pw-0123@127.0.0.1:{silent_server}/db?connect_timeout=3"
    done = run_moa("ask", "Q?", "--preset", "local", "--thread", "t", "--checkpoints", url)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: cannot open PostgreSQL checkpoints at 127.0.0.1:{silent_server}: no answer "
        "within the connect timeout of 3 s (connect_timeout in the URL sets it)"
    )
    assert "pw-0123" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["ask", "Q?", "--preset", "local", "--thread", "t", "--checkpoints", ""],
        ["serve", "--preset", "local", "--port", "0", "--checkpoint", ""],
        ["serve", "--preset", "local", "--port", "0", "--checkpoint", "sqlite:"],
    ],
)
def test_an_empty_checkpoint_location_is_refused(tmp_path: Path, command: list[str]) -> None:
    state = tmp_path / "state"
    done = run_moa(*command, env={"XDG_STATE_HOME": str(state)})
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: the checkpoint location is empty: give a SQLite file path or a postgresql:// URL"
    )
    assert not state.exists()  # no default store either
