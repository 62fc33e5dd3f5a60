"""The report: a results table (Markdown and CSV) and a plot of accuracy against cost."""

from __future__ import annotations

import csv
import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from moa_graph.errors import ConfigError
from moa_graph.eval.runner import ItemResult, read_results
from moa_graph.eval.scoring import WEIGHTS

Prices = dict[str, tuple[float, float]]

_PAIRED = ("fixed", "broken", "p_value")


def load_prices(path: str | Path | None = None) -> Prices:
    """Return the price table: dollars per million input and output tokens, by model.

    Args:
        path: A YAML file of ``model: {input: X, output: Y}`` whose entries override
            the shipped ``prices.yaml``.
    """
    text = resources.files("moa_graph.eval").joinpath("prices.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    if path is not None:
        data.update(yaml.safe_load(Path(path).read_text("utf-8")) or {})
    return {model: (float(p["input"]), float(p["output"])) for model, p in data.items()}


def cost(tokens: Mapping[str, tuple[int, int]], prices: Prices) -> float | None:
    """Return the dollar cost of the tokens, or None when a model has no price."""
    total = 0.0
    for model, (input_tokens, output_tokens) in tokens.items():
        price = prices.get(model) or next(
            (p for pattern, p in prices.items() if fnmatch.fnmatchcase(model, pattern)), None
        )
        if price is None:
            return None
        total += (input_tokens * price[0] + output_tokens * price[1]) / 1e6
    return total


@dataclass(frozen=True)
class Row:
    """One configuration's line in the results table.

    ``fixed``, ``broken`` and ``p_value`` compare it item by item with a baseline
    configuration: items it answers right where the baseline is wrong, the reverse,
    and the exact McNemar test of the two counts. ``early_exit`` is the share of items
    a turn of which left its layers early (``early_exit`` in the config).
    """

    config: str
    items: int
    correct: int | None
    accuracy: float | None
    input_tokens: int
    output_tokens: int
    tokens_per_item: float
    cost_usd: float | None
    wall_s: float
    wall_s_per_item: float
    early_exit: float
    fixed: int | None = None
    broken: int | None = None
    p_value: float | None = None


def mcnemar_p(fixed: int, broken: int) -> float:
    """Return the two-sided exact McNemar p-value of paired wins and losses.

    Under no difference, each item that changed is as likely fixed as broken: the
    smaller count is a binomial tail at one half, doubled.
    """
    changed = fixed + broken
    if changed == 0:
        return 1.0
    tail = sum(math.comb(changed, k) for k in range(min(fixed, broken) + 1))
    return min(1.0, 2 * tail / math.pow(2, changed))


def metric_means(results: Sequence[ItemResult]) -> dict[str, float]:
    """Return each scorer metric over the results: a plain mean, or weighted (IFEval)."""
    names = dict.fromkeys(name for r in results for name in r.metrics)
    means = {}
    for name in names:
        rows = [r.metrics for r in results if name in r.metrics]
        weight = WEIGHTS.get(name)
        weights = [m.get(weight, 1.0) if weight else 1.0 for m in rows]
        total = sum(weights)
        means[name] = sum(m[name] * w for m, w in zip(rows, weights, strict=True)) / total
    return {n: v for n, v in means.items() if n not in WEIGHTS.values()}


def summarize(
    label: str,
    results: Sequence[ItemResult],
    prices: Prices,
    baseline: Sequence[ItemResult] | None = None,
) -> Row:
    """Return a configuration's totals over its results, paired with a baseline's."""
    scored = [r.correct for r in results if r.correct is not None]
    costs = [cost(r.tokens, prices) for r in results]
    tokens = sum(r.input_tokens + r.output_tokens for r in results)
    paired: dict[str, Any] = {}
    if baseline is not None:
        base = {r.id: r.correct for r in baseline}
        fixed = sum(bool(r.correct) and base.get(r.id) is False for r in results)
        broken = sum(r.correct is False and bool(base.get(r.id)) for r in results)
        paired = {"fixed": fixed, "broken": broken, "p_value": mcnemar_p(fixed, broken)}
    return Row(
        config=label,
        items=len(results),
        correct=sum(scored) if scored else None,
        accuracy=sum(scored) / len(scored) if scored else None,
        input_tokens=sum(r.input_tokens for r in results),
        output_tokens=sum(r.output_tokens for r in results),
        tokens_per_item=tokens / len(results) if results else 0.0,
        cost_usd=None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
        wall_s=sum(r.wall_s for r in results),
        wall_s_per_item=sum(r.wall_s for r in results) / len(results) if results else 0.0,
        early_exit=sum(r.exited_early for r in results) / len(results) if results else 0.0,
        **paired,
    )


def _cell(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.1f}"
    return str(value)


def write_report(
    results: Mapping[str, Sequence[ItemResult]] | str | Path,
    out_dir: str | Path,
    *,
    prices: Prices | None = None,
    title: str = "Results",
    baseline: str | None = None,
) -> list[Row]:
    """Write ``results.md``, ``results.csv`` and ``accuracy_vs_cost.png`` to ``out_dir``.

    Only items every configuration answered are compared, so rows are on the same items.

    Args:
        results: Results by configuration label, or a directory of ``<label>.jsonl``.
        out_dir: Where the report goes.
        prices: The price table (default: :func:`load_prices`).
        title: The Markdown heading.
        baseline: The label every configuration is paired with (items fixed and
            broken, exact McNemar p).

    Raises:
        ConfigError: ``baseline`` is not one of the configurations.

    Returns:
        The table's rows.
    """
    if isinstance(results, str | Path):
        results = {
            p.stem: list(read_results(p).values()) for p in sorted(Path(results).glob("*.jsonl"))
        }
    prices = prices if prices is not None else load_prices()
    common = (
        set.intersection(*(set(r.id for r in rs) for rs in results.values())) if results else set()
    )
    if baseline is not None and baseline not in results:
        raise ConfigError(f"baseline '{baseline}' is not among {', '.join(results)}")
    kept = {label: [r for r in rs if r.id in common] for label, rs in results.items()}
    base = kept[baseline] if baseline else None
    rows = [summarize(label, rs, prices, base) for label, rs in kept.items()]
    metrics = {label: metric_means(rs) for label, rs in kept.items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_tables(rows, metrics, out, title=title, baseline=baseline, answered=len(common))
    _plot(rows, out / "accuracy_vs_cost.png", title)
    return rows


def _write_tables(
    rows: Sequence[Row],
    metrics: Mapping[str, Mapping[str, float]],
    out: Path,
    *,
    title: str,
    baseline: str | None,
    answered: int,
) -> None:
    """Write ``results.csv`` and ``results.md``: every row, then its other metrics' means."""
    names = list(dict.fromkeys(n for m in metrics.values() for n in m if n != "accuracy"))
    fields = [f for f in Row.__dataclass_fields__ if baseline or f not in _PAIRED]
    table = [
        {**{f: getattr(row, f) for f in fields}, **{n: metrics[row.config].get(n) for n in names}}
        for row in rows
    ]
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as sink:
        writer = csv.DictWriter(sink, [*fields, *names])
        writer.writeheader()
        writer.writerows(table)
    lines = [f"# {title}", "", f"{answered} items answered by every configuration."]
    if baseline:
        lines.append(f"Paired with `{baseline}`: items fixed, broken, exact McNemar p.")
    columns = [*fields, *names]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row.values()) + " |" for row in table]
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _plot(rows: Sequence[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotted = [r for r in rows if r.accuracy is not None]
    if not plotted:
        return
    free = all(not r.cost_usd for r in plotted)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for row in plotted:
        per_item = (row.input_tokens + row.output_tokens) / max(row.items, 1)
        x = per_item if free else (row.cost_usd or 0.0)
        y = (row.accuracy or 0.0) * 100
        axes.scatter([x], [y])
        axes.annotate(row.config, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    axes.set_xlabel("tokens per item" if free else "cost (USD)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.margins(x=0.15, y=0.1)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
