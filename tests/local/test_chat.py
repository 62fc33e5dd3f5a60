"""`moa chat` on the embedded runtime: several turns in one process, then a prompt exit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.local
def test_moa_chat_on_local_tiny_answers_three_turns_and_exits(smollm2: str) -> None:
    # Turn 2 used to fail (a pooled connection of turn 1's closed event loop) and the
    # process then hung at exit; a generous timeout, as the tiny model rambles on a busy CPU.
    done = subprocess.run(
        [sys.executable, "-m", "moa_graph.cli.app", "chat", "-p", "local-tiny"],
        input="Say hi.\nName a color.\nName a fruit.\n",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("you>") == 4  # three turns, then the prompt that read the end
    assert len([line for line in done.stderr.splitlines() if line.startswith("agg ")]) >= 3
    assert "error" not in done.stderr.lower()
    assert done.stdout.strip()
