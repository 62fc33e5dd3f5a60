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
        [sys.executable, "-m", "moa_graph.cli", "chat", "-p", "local-tiny"],
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


@pytest.mark.local
def test_a_local_mixture_asked_to_call_tools_says_it_cannot(smollm2: str) -> None:
    """The local models write tool calls as JSON text; binding tools is a clear error."""
    from langchain_core.tools import tool

    from moa_graph import ChatMoA, InputError

    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    model = ChatMoA("local-tiny").bind_tools([multiply])
    with pytest.raises(InputError) as error:
        model.invoke("What is 1234 times 5678?")
    assert str(error.value) == (
        "agent 'smollm2-135m' (local:smollm2-135m) cannot call tools: "
        "the local models write tool calls as text"
    )
