"""Checking proposed code against the examples in the prompt, to choose between proposals.

A prompt that asks for a function often shows how it behaves, as doctest examples
(``>>> add(2, 3)`` then ``5``). Each proposal's code runs in the WebAssembly sandbox
(:func:`moa_graph.sandbox.execute.run_python`: no host files, network or processes, time and
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

from moa_graph.sandbox.execute import run_python

EXAMPLE_SCAN_CHARS = 100_000
"""How much of a prompt is searched for examples: the lines within its first 100,000 characters.

Examples sit near the start of a prompt (HumanEval's longest prompt has 1,360 characters);
the cap bounds what one parse costs and how many examples a check runs, whatever a
client sends. The cut falls at a line break, so no example is read half.
"""

# Prompts come from clients, so reading one takes time linear in its length. Python's
# `re` backtracks, so each pattern here is written to never go back more than a bounded
# way: possessive quantifiers (`*+`, `?+`) keep what they matched, and the one `.*` that
# gives characters back (a call's arguments) stays within its line. (`_IMPORT` and
# `_DELIMITER` need no marks: the next character rules out at once what they give back.)
# They find what the plain patterns found, except a lone space at the very end of a
# prompt as a call's value. A linear-time engine (google-re2) would add a native
# dependency and still not cover doctest's own parser, whose patterns are quadratic on
# crafted text, so `_doctests` reads examples line by line instead.
_BLOCK = re.compile(
    r"```[ \t]*+(?:python3|python|py)?+[ \t]*+\n(.*?)```", re.DOTALL | re.IGNORECASE
)
_IMPORT = re.compile(r"^(?:from\s+\S+\s+import\s+.+|import\s+.+)$", re.MULTILINE)
_DELIMITER = re.compile(r"^[ \t]*(?:\"{3}|'{3}|```).*$", re.MULTILINE)
# `f(2) == 4` (or `==>`, `=>`, `->`, `➞`, `→`, `should return`) at the start of a line;
# the arrow and the value may follow on later lines.
_CALL_EQUALS = re.compile(
    r"^[^\S\n]*+(?P<call>[A-Za-z_]\w*+\(.*\))\s*+(?:==>?|=>|->|➞|→|should return)"
    r"\s*+(?P<want>\S(?:.*\S)?)",
    re.MULTILINE,
)
# An option directive (`# doctest: +ELLIPSIS`) on one line of an example's source.
_DIRECTIVE = re.compile(r"#[^\S\n]*+doctest:[^\S\n]*+(.*)")
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
    are left out. Only the lines within the first :data:`EXAMPLE_SCAN_CHARS`
    characters are read.
    """
    head = prompt
    if len(prompt) > EXAMPLE_SCAN_CHARS:
        head = prompt[: prompt.rfind("\n", 0, EXAMPLE_SCAN_CHARS) + 1]
    examples = _doctests(head)
    if examples:
        return examples
    return [(f"({m['call']}) == ({m['want']})\n", "True\n") for m in _CALL_EQUALS.finditer(head)]


def _doctests(prompt: str) -> list[tuple[str, str]]:
    """Return the doctest examples of a prompt that have an expected output.

    They are what :class:`doctest.DocTestParser` finds, read one line at a time (two of
    its patterns take quadratic time on crafted text): none when an example is
    malformed (no space after ``>>>``, a continuation or output line not indented like
    its ``>>>``, an unknown option directive). One difference: a directive must be on
    one line.
    """
    if ">>>" not in prompt:
        return []
    # A docstring's closing quotes or a code fence right after an example would
    # otherwise be read as part of its expected output.
    lines = _DELIMITER.sub("", prompt).expandtabs().split("\n")
    # As doctest does, remove the indentation that all lines with text share.
    margin = min((_indent(line) for line in lines if _has_text(line)), default=0)
    lines = [line[margin:] for line in lines]
    examples = []
    i = 0
    while i < len(lines):
        if not lines[i].lstrip(" ").startswith(">>>"):
            i += 1
            continue
        start, i = i, i + 1
        while i < len(lines) and lines[i].lstrip(" ").startswith("..."):
            i += 1
        source_end = i
        # The expected output runs to a blank line or the next example.
        while i < len(lines) and lines[i].strip(" ") and not lines[i].lstrip(" ").startswith(">>>"):
            i += 1
        try:
            example = _example(lines[start:source_end], lines[source_end:i])
        except ValueError:  # a malformed example: the prompt's examples are not ones to run
            return []
        if example is not None and example[1].strip():
            examples.append(example)
    return examples


def _example(source_lines: list[str], want_lines: list[str]) -> tuple[str, str] | None:
    """Return the source and expected output of one example; None for a comment alone.

    Raises:
        ValueError: The example is malformed.
    """
    indent = _indent(source_lines[0])
    if any(len(line) > indent + 3 and line[indent + 3] != " " for line in source_lines):
        raise ValueError("no space after >>> or ...")
    margin = " " * indent
    if any(line and not line.startswith(margin + ".") for line in source_lines[1:]) or any(
        not line.startswith(margin) for line in want_lines
    ):
        raise ValueError("inconsistent indentation")
    source = "\n".join(line[indent + 4 :] for line in source_lines)
    want = "\n".join(line[indent:] for line in want_lines)
    options = [option for line in source.split("\n") for option in _options(line)]
    if _blank_or_comment(source):
        if options:
            raise ValueError("an option directive without an example")
        return None
    source = source if source.endswith("\n") else source + "\n"
    return source, want + "\n" if want else ""


def _options(line: str) -> list[str]:
    """Return the options of a source line's directive, checking each.

    Raises:
        ValueError: An option doctest does not know.
    """
    # A directive's options run to the end of the line and hold no quotes.
    after_quotes = max(line.rfind("'"), line.rfind('"')) + 1
    directive = _DIRECTIVE.search(line, after_quotes)
    options = directive[1].replace(",", " ").split() if directive else []
    for option in options:
        if option[0] not in "+-" or option[1:] not in doctest.OPTIONFLAGS_BY_NAME:
            raise ValueError(f"unknown doctest option {option!r}")
    return options


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _has_text(line: str) -> bool:
    """Whether the line's first character after its spaces is not white space."""
    text = line.lstrip(" ")
    return bool(text) and not text[0].isspace()


def _blank_or_comment(source: str) -> bool:
    """Whether the source is one line of spaces, or of a comment (then maybe a line break)."""
    first, _, rest = source.partition("\n")
    text = first.lstrip(" ")
    return not rest and (not text or text.startswith("#"))


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
