"""The report: a results table (Markdown and CSV) and a plot of accuracy against cost."""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import yaml

from moa_graph.eval.runner import ItemResult, read_results

Prices = dict[str, tuple[float, float]]


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
    """One configuration's line in the results table."""

    config: str
    items: int
    correct: int | None
    accuracy: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    wall_s: float


def summarize(label: str, results: Sequence[ItemResult], prices: Prices) -> Row:
    """Return a configuration's totals over its results."""
    scored = [r.correct for r in results if r.correct is not None]
    costs = [cost(r.tokens, prices) for r in results]
    return Row(
        config=label,
        items=len(results),
        correct=sum(scored) if scored else None,
        accuracy=sum(scored) / len(scored) if scored else None,
        input_tokens=sum(r.input_tokens for r in results),
        output_tokens=sum(r.output_tokens for r in results),
        cost_usd=None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
        wall_s=sum(r.wall_s for r in results),
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
) -> list[Row]:
    """Write ``results.md``, ``results.csv`` and ``accuracy_vs_cost.png`` to ``out_dir``.

    Only items every configuration answered are compared, so rows are on the same items.

    Args:
        results: Results by configuration label, or a directory of ``<label>.jsonl``.
        out_dir: Where the report goes.
        prices: The price table (default: :func:`load_prices`).
        title: The Markdown heading.

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
    rows = [
        summarize(label, [r for r in rs if r.id in common], prices) for label, rs in results.items()
    ]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = list(Row.__dataclass_fields__)
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as sink:
        writer = csv.DictWriter(sink, fields)
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    lines = [f"# {title}", "", f"{len(common)} items answered by every configuration.", ""]
    lines += ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join(_cell(getattr(row, f)) for f in fields) + " |" for row in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(rows, out / "accuracy_vs_cost.png", title)
    return rows


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
