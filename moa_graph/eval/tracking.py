"""``--langsmith``: run an evaluation as a LangSmith experiment (dataset plus evaluators)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import HumanMessage

from moa_graph.config.model import MoAConfig
from moa_graph.errors import MoAError
from moa_graph.eval.items import Item
from moa_graph.eval.runner import config_label
from moa_graph.eval.scoring import has_scorer, is_correct, score
from moa_graph.run.factory import create_moa


def langsmith_dataset(client: Any, dataset: str, items: Sequence[Item]) -> str:
    """Create (or reuse) a LangSmith dataset holding the items; return its name."""
    name = f"moa-eval/{dataset}/{len(items)}-{items[0].id if items else 'empty'}"
    if not client.has_dataset(dataset_name=name):
        created = client.create_dataset(name, description=f"moa-graph eval items of {dataset}")
        client.create_examples(
            dataset_id=created.id,
            examples=[
                {
                    "inputs": {"turns": list(item.turns)},
                    "outputs": {"reference": item.reference, "item": item.id},
                    "metadata": {"item": item.id},
                }
                for item in items
            ],
        )
    return name


async def run_langsmith_experiment(
    config: MoAConfig, dataset: str, items: Sequence[Item], *, concurrency: int = 4
) -> Any:
    """Run the items through the config as a LangSmith experiment.

    Each example's turns are answered in order; exactly scored benchmarks get a
    ``correct`` evaluator.

    Raises:
        MoAError: ``LANGSMITH_API_KEY`` is not set.
    """
    if not os.environ.get("LANGSMITH_API_KEY"):
        raise MoAError("--langsmith needs LANGSMITH_API_KEY set")
    from langsmith import Client, aevaluate

    client = Client()
    graph = create_moa(config).compile()

    async def target(inputs: dict[str, Any]) -> dict[str, Any]:
        messages: list[Any] = []
        for turn in inputs["turns"]:
            state = await graph.ainvoke({"messages": [*messages, HumanMessage(turn)]})
            messages = state["messages"]
        return {"answer": messages[-1].text}

    evaluators: list[Any] = []
    if has_scorer(dataset):
        by_id = {item.id: item for item in items}

        def correct(outputs: dict[str, Any], reference_outputs: dict[str, Any]) -> bool:
            metrics = score(dataset, outputs["answer"], by_id[reference_outputs["item"]])
            return metrics is not None and is_correct(dataset, metrics)

        evaluators.append(correct)
    return await aevaluate(
        target,
        data=langsmith_dataset(client, dataset, items),
        evaluators=evaluators,
        experiment_prefix=config_label(config),
        metadata={"moa_config": config.to_dict() if _serializable(config) else config.name},
        max_concurrency=concurrency,
        client=client,
    )


def _serializable(config: MoAConfig) -> bool:
    agents = [a for layer in config.layers for a in layer] + [config.aggregator]
    return all(isinstance(a.model, str) for a in agents)
