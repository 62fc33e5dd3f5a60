"""Checkpoint stores under faults: a write still under way when its checkpointer closes
(a cancelled run), a PostgreSQL server that never answers, an empty location."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from moa_graph.durable import open_checkpointer


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
