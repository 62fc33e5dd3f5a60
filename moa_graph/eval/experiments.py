"""The paper's experiments, each a list of configurations built from one base config.

The base config's first layer is the model pool, strongest first; its aggregator
aggregates every MoA configuration.

- ``single-vs-moa``: each pool model alone at temperature 0, and the base MoA.
- ``layers``: the base MoA with 1, 2 and 3 proposer layers.
- ``proposers``: 1, 2, 3 and 6 proposers (the pool, cycled).
- ``self-moa``: the pool mixed against the strongest model sampled as many times.
- ``aggregation``: synthesize, LLM ranker, vote hint, and (exact tasks) majority vote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from moa_graph.config.model import AgentSpec, MoAConfig
from moa_graph.eval.datasets import is_exact
from moa_graph.eval.runner import ItemResult, run_evals


def _unnamed(agent: AgentSpec, **update: object) -> AgentSpec:
    return agent.model_copy(update={"name": None, **update})


def _variant(base: MoAConfig, name: str, **update: object) -> MoAConfig:
    data = {
        "layers": base.layers,
        "aggregator": base.aggregator,
        "temperature": base.temperature,
        "max_tokens": base.max_tokens,
        "seed": base.seed,
        "aggregate_prompt": base.aggregate_prompt,
        "aggregation": base.aggregation,
        **update,
        "name": name,
    }
    return MoAConfig.model_validate(data)


def pool(base: MoAConfig) -> list[AgentSpec]:
    """Return the distinct models of the base config's first layer, in order."""
    seen: dict[str, AgentSpec] = {}
    for agent in base.layers[0]:
        seen.setdefault(agent.model_id, _unnamed(agent))
    return list(seen.values())


def single(base: MoAConfig, agent: AgentSpec) -> MoAConfig:
    """Return a config that is ``agent`` alone at temperature 0 (its answer passes through)."""
    alone = _unnamed(agent, temperature=0.0)
    model = agent.model_id.partition(":")[2] or agent.model_id
    label = "single:" + model.rsplit("/", 1)[-1]
    return _variant(base, label, layers=[[alone]], aggregation="vote")


def _single_vs_moa(base: MoAConfig, exact: bool) -> list[MoAConfig]:
    return [*(single(base, agent) for agent in pool(base)), _variant(base, "moa")]


def _layers(base: MoAConfig, exact: bool) -> list[MoAConfig]:
    first = [_unnamed(a) for a in base.layers[0]]
    return [_variant(base, f"layers-{n}", layers=[first] * n) for n in (1, 2, 3)]


def _proposers(base: MoAConfig, exact: bool) -> list[MoAConfig]:
    models = pool(base)
    return [
        _variant(base, f"proposers-{n}", layers=[[models[i % len(models)] for i in range(n)]])
        for n in (1, 2, 3, 6)
    ]


def _self_moa(base: MoAConfig, exact: bool) -> list[MoAConfig]:
    models = pool(base)
    n = max(len(models), 3)
    mixed = [models[i % len(models)] for i in range(n)]
    return [
        _variant(base, f"mixed-{n}", layers=[mixed]),
        _variant(base, f"self-moa-{n}", layers=[[models[0]] * n]),
    ]


def _aggregation(base: MoAConfig, exact: bool) -> list[MoAConfig]:
    strategies = ["synthesize", "rank", "vote-hint", *(["vote"] if exact else [])]
    return [_variant(base, f"agg-{s}", aggregation=s) for s in strategies]


EXPERIMENTS: dict[str, Callable[[MoAConfig, bool], list[MoAConfig]]] = {
    "single-vs-moa": _single_vs_moa,
    "layers": _layers,
    "proposers": _proposers,
    "self-moa": _self_moa,
    "aggregation": _aggregation,
}
"""Every experiment, by name: a function from (base config, exact task) to configs."""


def experiment_configs(name: str, base: MoAConfig, *, exact: bool = True) -> list[MoAConfig]:
    """Return the configurations an experiment compares.

    Raises:
        ValueError: The experiment is unknown.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment '{name}' (known: {', '.join(EXPERIMENTS)})")
    return EXPERIMENTS[name](base, exact)


async def run_experiment(
    name: str,
    base: MoAConfig,
    dataset: str,
    out_dir: str | Path,
    *,
    share_calls: bool = True,
    **options: Any,
) -> dict[str, list[ItemResult]]:
    """Run every configuration of an experiment on the same items, one after another.

    Args:
        name: An experiment of :data:`EXPERIMENTS`.
        base: The config the experiment's configurations are built from.
        dataset: The benchmark.
        out_dir: Where each ``<label>.jsonl`` is saved (a rerun resumes).
        share_calls: Pay once for repeatable calls the configurations share
            (see :func:`~moa_graph.eval.runner.run_evals`).
        **options: The other arguments of :func:`~moa_graph.eval.runner.run_eval`.

    Returns:
        The results of each configuration, by label.
    """
    configs = experiment_configs(name, base, exact=is_exact(dataset))
    return await run_evals(configs, dataset, out_dir, share_calls=share_calls, **options)
