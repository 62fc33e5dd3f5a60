"""The official output formats, so results can be scored with the official tools.

- AlpacaEval: ``model_outputs.json``, a list of ``{instruction, output, generator, dataset}``.
- MT-Bench: FastChat answer JSONL, ``{question_id, answer_id, model_id, choices:
  [{index, turns}], tstamp}``, both turns answered.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

from moa_graph.eval.items import Item
from moa_graph.eval.runner import ItemResult


def write_alpaca_outputs(
    items: Sequence[Item], results: Sequence[ItemResult], path: str | Path, generator: str
) -> Path:
    """Write AlpacaEval's ``model_outputs.json`` for the items that have a result."""
    by_id = {r.id: r for r in results}
    rows = [
        {
            "instruction": item.turns[0],
            "output": by_id[item.id].outputs[0],
            "generator": generator,
            "dataset": item.meta.get("dataset", ""),
        }
        for item in items
        if item.id in by_id
    ]
    path = Path(path)
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_mtbench_answers(
    items: Sequence[Item], results: Sequence[ItemResult], path: str | Path, model_id: str
) -> Path:
    """Write a FastChat ``model_answer/<model_id>.jsonl`` for the items that have a result."""
    by_id = {r.id: r for r in results}
    lines = []
    for item in items:
        if item.id not in by_id:
            continue
        turns = by_id[item.id].outputs
        answer_id = hashlib.sha256(f"{model_id}/{item.id}".encode()).hexdigest()[:22]
        lines.append(
            json.dumps(
                {
                    "question_id": int(item.id),
                    "answer_id": answer_id,
                    "model_id": model_id,
                    "choices": [{"index": 0, "turns": turns}],
                    "tstamp": time.time(),
                },
                ensure_ascii=False,
            )
        )
    path = Path(path)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
