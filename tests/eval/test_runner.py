from __future__ import annotations

import asyncio
import csv
import json

import pytest

from moa_graph.eval.datasets import Item
from moa_graph.eval.outputs import write_alpaca_outputs, write_mtbench_answers
from moa_graph.eval.report import write_report
from moa_graph.eval.runner import read_results, run_eval, run_evals, select_items


def test_select_items_gives_disjoint_seeded_splits(items) -> None:
    tune = select_items(items, limit=3, seed=7)
    held_out = select_items(items, limit=3, seed=7, offset=3)
    assert tune == select_items(items, limit=3, seed=7)
    assert not {i.id for i in tune} & {i.id for i in held_out}
    assert sorted(i.id for i in select_items(items, seed=1)) == sorted(i.id for i in items)


async def test_run_scores_saves_and_counts_tokens(items, base_config, tmp_path) -> None:
    results = await run_eval(
        base_config(), "gsm8k", tmp_path, items=items, progress=False, concurrency=3
    )
    assert len(results) == 8
    # The aggregator repeats the strong proposer, which is always right.
    assert all(r.correct for r in results)
    first = results[0]
    assert first.tokens == {"strong": (10, 5), "weak": (10, 5), "agg": (10, 5)}
    saved = read_results(tmp_path / "fake-moa.jsonl")
    assert set(saved) == {i.id for i in items}


async def test_an_interrupted_run_resumes_where_it_stopped(items, base_config, tmp_path) -> None:
    config = base_config()
    slow = config.layers[0][0].model
    slow.delay = 0.05  # type: ignore[union-attr]
    task = asyncio.ensure_future(
        run_eval(config, "gsm8k", tmp_path, items=items, progress=False, concurrency=1)
    )
    while len(read_results(tmp_path / "fake-moa.jsonl")) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # A line cut short by the interruption is ignored.
    with (tmp_path / "fake-moa.jsonl").open("a") as sink:
        sink.write('{"id": "trunc')
    done_before = set(read_results(tmp_path / "fake-moa.jsonl"))
    assert 3 <= len(done_before) < len(items)
    calls_before = len(slow.calls)  # type: ignore[union-attr]

    results = await run_eval(config, "gsm8k", tmp_path, items=items, progress=False)
    assert [r.id for r in results] == [i.id for i in select_items(items)]
    new_calls = len(slow.calls) - calls_before  # type: ignore[union-attr]
    assert new_calls == len(items) - len(done_before)


async def test_failed_items_are_left_out_and_retried(items, base_config, tmp_path) -> None:
    config = base_config()
    aggregator = config.aggregator.model
    original = aggregator.reply  # type: ignore[union-attr]

    def flaky(model, messages):
        if "3 + 3" in messages[-1].text:
            raise ValueError("boom")
        return original(model, messages)

    aggregator.reply = flaky  # type: ignore[union-attr]
    results = await run_eval(config, "gsm8k", tmp_path, items=items, progress=False)
    assert "3" not in {r.id for r in results} and len(results) == 7
    assert "3" not in read_results(tmp_path / "fake-moa.jsonl")
    aggregator.reply = original  # type: ignore[union-attr]
    results = await run_eval(config, "gsm8k", tmp_path, items=items, progress=False)
    assert len(results) == 8


def test_rejects_zero_concurrency(items, base_config, tmp_path) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(run_eval(base_config(), "gsm8k", tmp_path, items=items, concurrency=0))


async def test_alpaca_eval_model_outputs(base_config, tmp_path) -> None:
    alpaca = [
        Item(str(i), (f"What is {i} + {i}?",), "ref", {"dataset": "helpful_base"}) for i in (1, 2)
    ]
    results = await run_eval(base_config(), "alpaca-eval", tmp_path, items=alpaca, progress=False)
    assert all(r.correct is None for r in results)
    path = write_alpaca_outputs(alpaca, results, tmp_path / "model_outputs.json", "fake-moa")
    rows = json.loads(path.read_text())
    assert rows == [
        {
            "instruction": "What is 1 + 1?",
            "output": results[0].outputs[0],
            "generator": "fake-moa",
            "dataset": "helpful_base",
        },
        {
            "instruction": "What is 2 + 2?",
            "output": results[1].outputs[0],
            "generator": "fake-moa",
            "dataset": "helpful_base",
        },
    ]


async def test_mt_bench_answers_both_turns_with_the_first_in_context(base_config, tmp_path) -> None:
    config = base_config()
    question = Item("81", ("What is 4 + 4?", "What is 5 + 5?"), None, {"category": "math"})
    results = await run_eval(config, "mt-bench", tmp_path, items=[question], progress=False)
    assert len(results[0].outputs) == 2
    strong = config.layers[0][0].model
    second_turn = strong.calls[-1]  # type: ignore[union-attr]
    assert [m.type for m in second_turn] == ["human", "ai", "human"]
    assert second_turn[1].text == results[0].outputs[0]
    path = write_mtbench_answers([question], results, tmp_path / "fake.jsonl", "fake-moa")
    (line,) = path.read_text().splitlines()
    answer = json.loads(line)
    assert set(answer) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert answer["question_id"] == 81 and answer["model_id"] == "fake-moa"
    assert answer["choices"] == [{"index": 0, "turns": results[0].outputs}]


async def test_early_exits_are_saved_and_reported_per_configuration(
    items, base_config, tmp_path
) -> None:
    plain = base_config()
    early = base_config(name="early", early_exit={"agree": "answer"})
    results = await run_evals([plain, early], "gsm8k", tmp_path, items=items, progress=False)
    # weak is wrong on even numbers: the proposals agree on the odd ones only
    assert {r.id for r in results["early"] if r.exited_early} == {"1", "3", "5", "7"}
    assert not any(r.exited_early for r in results["fake-moa"])
    one = next(r for r in results["early"] if r.id == "1")
    assert one.exits == [
        {
            "turn": 1,
            "layer": 1,
            "stage": 1,
            "action": "answer",
            "chosen": 0,
            "reason": "2 of 2 proposals state the answer 2",
        }
    ]
    assert one.tokens == {"strong": (10, 5), "weak": (10, 5)}  # no aggregator call
    assert one.outputs == ["1 + 1. The answer is 2"] and one.correct
    assert read_results(tmp_path / "early.jsonl")["1"].exits == one.exits
    rows = {row.config: row for row in write_report(results, tmp_path / "report")}
    assert (rows["fake-moa"].early_exit, rows["early"].early_exit) == (0.0, 0.5)
    assert (rows["fake-moa"].tokens_per_item, rows["early"].tokens_per_item) == (45.0, 37.5)
    assert rows["early"].wall_s_per_item == pytest.approx(rows["early"].wall_s / 8)
    table = {r["config"]: r for r in csv.DictReader((tmp_path / "report" / "results.csv").open())}
    assert (table["fake-moa"]["early_exit"], table["early"]["early_exit"]) == ("0.0", "0.5")
    header = (tmp_path / "report" / "results.md").read_text().splitlines()[4]
    assert "| tokens_per_item | cost_usd | wall_s | wall_s_per_item | early_exit |" in header
