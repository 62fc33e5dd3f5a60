"""Configurations run together pay once for the repeatable calls they share."""

from __future__ import annotations

from typing import Any

import pytest

from moa_graph.config.model import MoAConfig
from moa_graph.eval.runner import run_evals
from tests.openai_server import FakeOpenAIServer


def _config(
    server: FakeOpenAIServer, name: str, agents: list[dict[str, Any]], **rest: Any
) -> MoAConfig:
    layer = [{"base_url": server.url, **agent} for agent in agents]
    return MoAConfig.model_validate(
        {
            "name": name,
            "temperature": 0.7,
            "layers": [layer],
            "aggregator": {"model": "openai:agg", "base_url": server.url},
            "aggregation": "vote",
            **rest,
        }
    )


def _configs(server: FakeOpenAIServer) -> list[MoAConfig]:
    greedy = {"model": "openai:greedy", "temperature": 0}
    sampled = {"model": "openai:sampler"}
    return [
        # Seeds 0, 1, 2: the greedy call and two seeded samples.
        _config(server, "anchored", [greedy, sampled, sampled], seed=0),
        # The same greedy call (seed 0 at index 0): answered from the shared cache.
        _config(server, "single", [greedy], seed=0),
        # Sampled without a seed: never cached, so the two agents are both called.
        _config(server, "unseeded", [sampled, sampled]),
    ]


async def test_repeatable_calls_are_paid_once(openai_server, items, tmp_path) -> None:
    results = await run_evals(
        _configs(openai_server), "gsm8k", tmp_path, items=items, limit=3, progress=False
    )
    assert dict(openai_server.calls) == {"greedy": 3, "sampler": 6 + 6}
    anchored, single = results["anchored"], results["single"]
    # The shared call still counts as the single config's tokens, and gives its answer.
    assert [r.tokens["openai:greedy"] for r in single] == [
        r.tokens["openai:greedy"] for r in anchored
    ]
    assert all(r.tokens["openai:greedy"][1] > 0 for r in single)
    # Every answer ends in the number asked about, so the vote ties and greedy wins it.
    assert [r.outputs for r in single] == [r.outputs for r in anchored]
    assert all(r.outputs[0].startswith("greedy says: ") for r in single)


async def test_no_share_calls_calls_every_model(openai_server, items, tmp_path) -> None:
    await run_evals(
        _configs(openai_server),
        "gsm8k",
        tmp_path,
        items=items,
        limit=3,
        progress=False,
        share_calls=False,
    )
    assert dict(openai_server.calls) == {"greedy": 6, "sampler": 12}


async def test_configs_need_distinct_names(openai_server, items, tmp_path) -> None:
    configs = _configs(openai_server)
    with pytest.raises(ValueError, match="repeated: single"):
        await run_evals([*configs, configs[1]], "gsm8k", tmp_path, items=items, progress=False)
    assert not list(tmp_path.iterdir())
