"""The WebAssembly sandbox of moa_graph.sandbox.execute: HumanEval in it, and what a check costs.

* ``--canonical``: every HumanEval problem's canonical solution, scored by
  ``score_humaneval`` (the tests and ``check(entry_point)`` in the sandbox); all
  164 must pass.
* ``--rescore FILE...``: the answers recorded in ``moa eval`` result files (JSONL, one
  item a line, with ``outputs`` and ``correct``) scored again in this sandbox, and every
  item whose outcome differs from the recorded one listed.
* ``--counts FILE...``: for each item of ``moa eval`` result files, how many of the
  prompt's examples each of its recorded proposals passes (``check_code``), as JSON on
  stdout; run it against another checkout's code (``PYTHONPATH=OTHER python
  benchmarks/sandbox.py --counts ...`` from that checkout) to compare two sandboxes.
* ``--timing``: the cost of a check: the first run of a process with no compiled
  cache (a fresh cache folder: compile and store), the first run of a process with the
  cache, and warm runs (median of 20) of a HumanEval program and of a
  ``check_code`` check of two examples.

    python -m benchmarks.sandbox --canonical --timing
    python -m benchmarks.sandbox --rescore docs/evaluation/local-study/*/humaneval*/*.jsonl
    python -m benchmarks.sandbox --counts docs/evaluation/local-study/*/humaneval/consensus-3.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from moa_graph.eval.datasets import load_dataset
from moa_graph.eval.humaneval import score_humaneval
from moa_graph.strategies.code_check import examples_passed

ADD_PROMPT = '''```python
def add(a, b):
    """Add two numbers.
    >>> add(1, 2)
    3
    >>> add(-1, 1)
    0
    """
```'''
ADD_ANSWER = "```python\ndef add(a, b):\n    return a + b\n```"

# Run in a fresh process: the time to the first result, then the median of warm runs.
_TIMED = """
import statistics, sys, time
started = time.perf_counter()
from moa_graph.strategies import code_check
from moa_graph.eval.datasets import load_dataset
from moa_graph.eval.humaneval import score_humaneval
item = load_dataset("humaneval")[0]
program = item.meta["canonical_solution"]
first_started = time.perf_counter()
assert score_humaneval(program, item)["pass@1"] == 1.0
first = time.perf_counter() - first_started
humaneval, check = [], []
for n in range(20):
    t = time.perf_counter()
    score_humaneval(program, item)
    humaneval.append(time.perf_counter() - t)
    code_check._remembered.cache_clear()
    t = time.perf_counter()
    assert code_check.examples_passed(sys.argv[1], [sys.argv[2]]) == [2]
    check.append(time.perf_counter() - t)
print(f"{first:.2f} {statistics.median(humaneval):.3f} {statistics.median(check):.3f}")
"""


def canonical() -> None:
    items = load_dataset("humaneval")
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        passed = list(
            pool.map(lambda i: score_humaneval(i.meta["canonical_solution"], i)["pass@1"], items)
        )
    failed = [item.id for item, ok in zip(items, passed, strict=True) if not ok]
    print(f"canonical solutions: {len(items) - len(failed)} of {len(items)} pass", end=" ")
    print(f"({time.perf_counter() - started:.0f} s, 2 threads); failing: {failed or 'none'}")


def rescore(files: list[Path]) -> None:
    items = {item.id: item for item in load_dataset("humaneval")}
    for path in files:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [row for row in rows if row.get("outputs")]
        with ThreadPoolExecutor(2) as pool:
            now = list(pool.map(lambda r: score_humaneval(r["outputs"][-1], items[r["id"]]), rows))
        changed = [
            f"{row['id']} {row['correct']}->{bool(score['pass@1'])}"
            for row, score in zip(rows, now, strict=True)
            if bool(score["pass@1"]) != bool(row["correct"])
        ]
        before = sum(bool(row["correct"]) for row in rows)
        after = sum(int(score["pass@1"]) for score in now)
        print(f"{path}: {before} -> {after} of {len(rows)}; changed: {changed or 'none'}")


def counts(files: list[Path]) -> None:
    items = {item.id: item for item in load_dataset("humaneval")}
    rows = [json.loads(line) for path in files for line in path.read_text().splitlines() if line]

    def count(row: dict[str, Any]) -> tuple[str, list[int] | None]:
        return f"{row['id']}", examples_passed(items[row["id"]].turns[0], row["proposals"])

    with ThreadPoolExecutor(2) as pool:
        print(json.dumps(dict(pool.map(count, rows)), indent=0))


def timing() -> None:
    from moa_graph.sandbox import runtime as wasi_runtime

    def fresh_process(cache: str) -> list[str]:
        env = {**os.environ, "MOA_GRAPH_CACHE": cache}
        done = subprocess.run(
            [sys.executable, "-c", _TIMED, ADD_PROMPT, ADD_ANSWER],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.split()

    wasm = wasi_runtime.wasm_path()
    with tempfile.TemporaryDirectory() as cache:
        os.symlink(wasm, Path(cache) / wasm.name)  # the runtime, without its compiled cache
        (Path(cache) / f"{wasm.name}.verified").write_bytes(
            (wasm.parent / f"{wasm.name}.verified").read_bytes()
        )
        cold = fresh_process(cache)
        cached = fresh_process(cache)
    print("| run | HumanEval/0 canonical, first | then, median of 20 | check_code of 2 examples |")
    print("|---|---|---|---|")
    print(f"| new process, no compiled cache | {cold[0]} s | {cold[1]} s | {cold[2]} s |")
    print(f"| new process, compiled cache | {cached[0]} s | {cached[1]} s | {cached[2]} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--canonical", action="store_true")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--rescore", nargs="*", type=Path, default=[])
    parser.add_argument("--counts", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    if args.canonical:
        canonical()
    if args.rescore:
        rescore(args.rescore)
    if args.counts:
        counts(args.counts)
    if args.timing:
        timing()


if __name__ == "__main__":
    main()
