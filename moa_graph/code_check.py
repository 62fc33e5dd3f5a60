"""Checking proposed code against the examples in the prompt, to choose between proposals.

A prompt that asks for a function often shows how it behaves, as doctest examples
(``>>> add(2, 3)`` then ``5``). Each proposal's code runs in the WebAssembly sandbox
(:func:`moa_graph.execution.run_python`: no host files, network or processes, time and
memory limits), which returns what each example printed; this process compares that
with the expected output, and the proposals that pass the most are the ones to choose
from. Nothing runs unless a config asks for it (``check_code: true``).
"""

from __future__ import annotations

import doctest
import functools
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from moa_graph.execution import run_python

_BLOCK = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_IMPORT = re.compile(r"^(?:from\s+\S+\s+import\s+.+|import\s+.+)$", re.MULTILINE)
_DELIMITER = re.compile(r"^[ \t]*(?:\"{3}|'{3}|```).*$", re.MULTILINE)
_CALL_EQUALS = re.compile(
    r"^\s*(?P<call>[A-Za-z_]\w*\(.*\))\s*(?:==>?|=>|->|➞|→|should return)\s*(?P<want>.+?)\s*$",
    re.MULTILINE,
)
# What an example printed is compared with what the prompt expects as doctest would
# (the examples of prompt_examples carry no directives of their own).
_CHECKER = doctest.OutputChecker()
_FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def code_blocks(text: str) -> str:
    """Return the fenced code of a response, blocks joined; the whole text if it has none."""
    blocks = _BLOCK.findall(text)
    return "\n\n".join(blocks) if blocks else text


def prompt_examples(prompt: str) -> list[tuple[str, str]]:
    """Return the examples of a prompt as doctest ``(source, expected output)`` pairs.

    Doctest examples (``>>> f(2)`` then ``4``) are taken as they are; without any,
    lines like ``f(2) == 4``, ``f(2) => 4`` or ``f(2) ➞ 4`` become checks that the
    call equals the value. Examples whose expected output is empty check nothing and
    are left out.
    """
    examples = _doctests(prompt)
    if examples:
        return examples
    return [(f"({m['call']}) == ({m['want']})\n", "True\n") for m in _CALL_EQUALS.finditer(prompt)]


def _doctests(prompt: str) -> list[tuple[str, str]]:
    # A docstring's closing quotes or a code fence right after an example would
    # otherwise be read as part of its expected output.
    text = _DELIMITER.sub("", prompt)
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError:  # inconsistent indentation: not examples one can run
        return []
    return [(e.source, e.want) for e in examples if e.want.strip()]


class _TimedOut(Exception):
    """A run that reached its time limit: a busy machine may be why, so it is not kept."""


# One program's count, remembered: a run checks the same proposals at each early-exit
# stage and again when it aggregates, and the sandboxed run is the costly part. (An
# exception is never cached, so a timeout is checked again next time.)
@functools.lru_cache(maxsize=256)
def _remembered(code: str, examples: tuple[tuple[str, str], ...], timeout_s: float) -> int:
    sources = [source for source, _ in examples]
    result = run_python(code, examples=sources, timeout_s=timeout_s, memory_mb=512)
    if result.status == "timeout":
        raise _TimedOut
    # One point per example whose output matches: never more than there are examples,
    # whatever the program prints.
    return sum(
        got is not None and _CHECKER.check_output(doctest.Example(source, want).want, got, _FLAGS)
        for (source, want), got in zip(examples, result.outputs, strict=False)
    )


def _passed(code: str, examples: tuple[tuple[str, str], ...], timeout_s: float) -> int:
    try:
        return _remembered(code, examples, timeout_s)
    except _TimedOut:
        return 0


def examples_passed(
    prompt: str, responses: Sequence[str], *, timeout_s: float = 5.0
) -> list[int] | None:
    """Return how many of the prompt's examples each response's code passes.

    The import lines of the prompt's own code come first, since answers often use
    names (``List``) the prompt imported. The responses run in parallel, each in its
    own sandbox; a program already checked in this process is not run again, unless
    it ran out of time.

    Args:
        prompt: The user's message, holding the examples.
        responses: The proposals, each with its code in a fenced block (or bare).
        timeout_s: Time limit of one response's run.

    Returns:
        One count per response, or None when the prompt has no examples.

    Raises:
        SandboxUnavailableError: The sandbox's runtime is not installed.
    """
    examples = tuple(prompt_examples(prompt))
    if not examples:
        return None
    imports = "\n".join(_IMPORT.findall(code_blocks(prompt)))
    programs = [f"{imports}\n{code_blocks(r)}" for r in responses]
    with ThreadPoolExecutor(max_workers=len(programs)) as pool:
        return list(pool.map(lambda code: _passed(code, examples, timeout_s), programs))
