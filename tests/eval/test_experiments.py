from __future__ import annotations

import csv

import pytest

from moa_graph.eval.experiments import EXPERIMENTS, experiment_configs, run_experiment
from moa_graph.eval.report import cost, load_prices, write_report


def _shape(config) -> tuple[list[int], str]:
    return [len(layer) for layer in config.layers], config.aggregation


def test_each_experiment_builds_its_configurations(base_config) -> None:
    base = base_config()
    shapes = {
        name: {c.name: _shape(c) for c in experiment_configs(name, base, exact=True)}
        for name in EXPERIMENTS
    }
    assert shapes["single-vs-moa"] == {
        "single:strong": ([1], "vote"),
        "single:weak": ([1], "vote"),
        "moa": ([2], "synthesize"),
    }
    assert shapes["layers"] == {
        "layers-1": ([2], "synthesize"),
        "layers-2": ([2, 2], "synthesize"),
        "layers-3": ([2, 2, 2], "synthesize"),
    }
    assert shapes["proposers"] == {f"proposers-{n}": ([n], "synthesize") for n in (1, 2, 3, 6)}
    assert shapes["self-moa"] == {"mixed-3": ([3], "synthesize"), "self-moa-3": ([3], "synthesize")}
    self_moa = experiment_configs("self-moa", base)[1]
    assert {a.model_id for a in self_moa.layers[0]} == {"strong"}
    assert shapes["aggregation"] == {
        f"agg-{s}": ([2], s) for s in ("synthesize", "rank", "vote-hint", "vote")
    }
    no_vote = experiment_configs("aggregation", base, exact=False)
    assert "agg-vote" not in {c.name for c in no_vote}
    single = experiment_configs("single-vs-moa", base)[0]
    assert single.sampling(single.layers[0][0])["temperature"] == 0


def test_unknown_experiment_is_a_clear_error(base_config) -> None:
    with pytest.raises(ValueError, match="unknown experiment 'depth'"):
        experiment_configs("depth", base_config())


@pytest.mark.parametrize("name", list(EXPERIMENTS))
async def test_each_experiment_runs_on_fake_models_and_reports(
    name, base_config, items, tmp_path
) -> None:
    results = await run_experiment(
        name, base_config(), "gsm8k", tmp_path, items=items, limit=4, progress=False
    )
    labels = [c.name for c in experiment_configs(name, base_config())]
    assert list(results) == labels
    assert all(len(rows) == 4 for rows in results.values())
    rows = write_report(tmp_path, tmp_path / "report", title=name)
    assert {row.config for row in rows} == set(labels)
    assert (tmp_path / "report" / "accuracy_vs_cost.png").read_bytes()[:4] == b"\x89PNG"
    table = list(csv.DictReader((tmp_path / "report" / "results.csv").open()))
    assert sorted(r["config"] for r in table) == sorted(labels)
    assert all(int(r["items"]) == 4 for r in table)
    assert "| config |" in (tmp_path / "report" / "results.md").read_text()


async def test_single_vs_moa_scores_reflect_the_models(base_config, items, tmp_path) -> None:
    results = await run_experiment("single-vs-moa", base_config(), "gsm8k", tmp_path, items=items)
    accuracy = {label: sum(bool(r.correct) for r in rows) for label, rows in results.items()}
    # weak is wrong on even numbers (4 of 8); the aggregator follows strong.
    assert accuracy == {"single:strong": 8, "single:weak": 4, "moa": 8}
    single = results["single:weak"][0]
    assert set(single.tokens) == {"weak"}  # the vote over one answer calls no aggregator


async def test_aggregation_strategies_differ(base_config, items, tmp_path) -> None:
    config = base_config()
    strong, weak = config.layers[0]
    mixed = config.model_copy(
        update={"layers": [[strong, weak, weak.model_copy(update={"name": "weak2"})]]}
    )
    results = await run_experiment("aggregation", mixed, "gsm8k", tmp_path, items=items)
    right = {label: sum(bool(r.correct) for r in rows) for label, rows in results.items()}
    # Two weak proposals outvote the strong one on even numbers; the ranker and the
    # synthesizer here follow proposal 1, the strong one.
    assert right["agg-vote"] == 4
    assert right["agg-rank"] == 8 and right["agg-synthesize"] == 8
    ranked = results["agg-rank"][0]
    assert ranked.outputs[0].startswith(ranked.id + " + ")  # a proposal, verbatim


def test_prices_and_cost(tmp_path) -> None:
    prices = load_prices()
    assert prices["local:*"] == (0.0, 0.0)
    assert cost({"local:qwen2.5-coder-1.5b": (1000, 1000)}, prices) == 0.0
    assert cost({"openai:gpt-4o": (1_000_000, 100_000)}, prices) == pytest.approx(3.5)
    assert cost({"mystery:model": (1, 1)}, prices) is None
    edited = tmp_path / "prices.yaml"
    edited.write_text('"openai:gpt-4o": {input: 1.0, output: 1.0}\n')
    assert cost({"openai:gpt-4o": (1_000_000, 0)}, load_prices(edited)) == 1.0


def test_report_pairs_configs_with_a_baseline_and_weights_metrics(tmp_path) -> None:
    from moa_graph.errors import ConfigError
    from moa_graph.eval.report import mcnemar_p
    from moa_graph.eval.runner import ItemResult

    def result(label, id, correct, strict, instruction, n):
        metrics = {"prompt_strict": strict, "instruction_strict": instruction, "instructions": n}
        return ItemResult(id=id, label=label, outputs=["x"], correct=correct, metrics=metrics)

    base = [result("single", "1", False, 0.0, 0.0, 1), result("single", "2", True, 1.0, 1.0, 3)]
    moa = [result("moa", "1", True, 1.0, 1.0, 1), result("moa", "2", False, 0.0, 2 / 3, 3)]
    rows = write_report({"single": base, "moa": moa}, tmp_path, baseline="single")
    assert (rows[1].fixed, rows[1].broken, rows[1].p_value) == (1, 1, 1.0)
    table = list(csv.DictReader((tmp_path / "results.csv").open()))
    # instruction level: (1 + 2) of 4 instructions, not the mean of 1 and 2/3
    assert float(table[1]["instruction_strict"]) == 0.75
    assert float(table[1]["prompt_strict"]) == 0.5
    assert "instructions" not in table[1]
    assert (mcnemar_p(7, 1), mcnemar_p(12, 2)) == (0.0703125, 0.012939453125)
    with pytest.raises(ConfigError, match="baseline 'nope' is not among single, moa"):
        write_report({"single": base, "moa": moa}, tmp_path, baseline="nope")
