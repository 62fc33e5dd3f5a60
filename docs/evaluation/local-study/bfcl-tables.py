"""Print the BFCL study's tables: each configuration paired with ``single``.

Usage: ``python docs/evaluation/local-study/bfcl-tables.py RESULTS PART``, e.g.
``docs/evaluation/local-study held-out``. Pairs are made on the items both answered;
p is the exact two-sided McNemar test on the items one got right and the other wrong.
"""

from __future__ import annotations

import json
import sys
from math import comb
from pathlib import Path
from typing import Any

SUBSETS = ("simple_python", "multiple", "parallel", "irrelevance")
CONFIGS = ("single", "local", "synthesize-3", "local-first")
HEADER = (
    "| subset | config | items | correct | `single` on the same items | fixed / broken "
    "| McNemar p | tokens per item (x single) | early exit |\n|---|---|---|---|---|---|---|---|---|"
)


def results(path: Path) -> dict[str, dict[str, Any]]:
    """Return the items of one results file by id (none when it is missing)."""
    if not path.exists():
        return {}
    return {row["id"]: row for row in map(json.loads, path.open(encoding="utf-8"))}


def tokens(row: dict[str, Any]) -> int:
    """Return the tokens of every call an item made, input and output."""
    return sum(sum(counts) for counts in row["tokens"].values())


def mcnemar(fixed: int, broken: int) -> float:
    """Return the exact two-sided McNemar p of ``fixed`` against ``broken`` items."""
    n = fixed + broken
    tail = sum(comb(n, i) for i in range(min(fixed, broken) + 1))
    return min(1.0, 2 * tail / 2**n) if n else 1.0


def row(subset: str, label: str, got: dict[str, Any], base: dict[str, Any]) -> list[float]:
    """Print one configuration's row; return its sums for the total."""
    common = sorted(set(got) & set(base))
    right = sum(bool(got[i]["correct"]) for i in common)
    before = sum(bool(base[i]["correct"]) for i in common)
    fixed = sum(bool(got[i]["correct"]) and not base[i]["correct"] for i in common)
    broken = sum(bool(base[i]["correct"]) and not got[i]["correct"] for i in common)
    spent, baseline = sum(tokens(got[i]) for i in common), sum(tokens(base[i]) for i in common)
    exited = sum(any(got[i].get("exits") or []) for i in common)
    sums = [len(common), right, before, fixed, broken, spent, baseline, exited]
    print(line(subset, label, sums, early_exit=True))
    return [float(value) for value in sums]


def line(subset: str, label: str, sums: list[float], *, early_exit: bool) -> str:
    """Return the table line of ``sums`` (items, right, single right, fixed, broken, ...)."""
    n, right, before, fixed, broken, spent, baseline, exited = sums
    per_item = f"{spent / n:,.0f}"
    if label == "single":
        return f"| {subset} | single (1.5B alone) | {n:.0f} | {right:.0f} | | | | {per_item} | |"
    exits = f"{exited / n:.0%}" if early_exit else ""
    return (
        f"| {subset} | {label} | {n:.0f} | {right:.0f} | {before:.0f} | {fixed:.0f} / {broken:.0f} "
        f"| {mcnemar(int(fixed), int(broken)):.2f} | {per_item} ({spent / baseline:.1f}x) "
        f"| {exits} |"
    )


def main() -> None:
    """Print the table of one part."""
    root, part = Path(sys.argv[1]), sys.argv[2]
    print(HEADER)
    totals: dict[str, list[float]] = {}
    for subset in SUBSETS:
        folder = root / part / f"bfcl-{subset}"
        base = results(folder / "single.jsonl")
        for label in CONFIGS:
            got = results(folder / f"{label}.jsonl")
            if set(got) & set(base):
                sums = row(subset, label, got, base)
                before = totals.get(label, [0.0] * len(sums))
                totals[label] = [a + b for a, b in zip(before, sums, strict=True)]
    for label, sums in totals.items():
        print(line("**all four**", label, sums, early_exit=False))


if __name__ == "__main__":
    main()
