"""Fake benchmark items and fake-model configs for the harness tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from moa_graph.config.model import MoAConfig
from moa_graph.eval.datasets import Item
from tests.fake_chat import FakeChatModel

ITEMS = [Item(str(i), (f"What is {i} + {i}?",), str(2 * i)) for i in range(1, 9)]


def solver(wrong_every: int) -> Callable[[FakeChatModel, list[BaseMessage]], str]:
    """A reply that doubles the number asked about, wrong on every n-th item."""

    def reply(model: FakeChatModel, messages: list[BaseMessage]) -> str:
        n = int(messages[-1].text.split("What is ", 1)[-1].split(" ")[0])
        answer = 2 * n + (1 if wrong_every and n % wrong_every == 0 else 0)
        return f"{n} + {n}. The answer is {answer}"

    return reply


def aggregator_reply(model: FakeChatModel, messages: list[BaseMessage]) -> str:
    """An aggregator that repeats the first reference's answer, or ranks the first best."""
    text = messages[-1].text
    if "candidate responses" in text:
        return "Best: 1"
    system = messages[0].text
    return "Synthesized. " + system.rsplit("1. ", 1)[-1].split("\n")[0]


@pytest.fixture
def items() -> list[Item]:
    return list(ITEMS)


@pytest.fixture
def base_config(fake_model: Callable[..., FakeChatModel]) -> Callable[..., MoAConfig]:
    def make(**update: Any) -> MoAConfig:
        strong = fake_model("strong", reply=solver(0))
        weak = fake_model("weak", reply=solver(2))
        aggregator = fake_model("agg", reply=aggregator_reply)
        data: dict[str, Any] = {
            "name": "fake-moa",
            "layers": [[strong, weak]],
            "aggregator": aggregator,
            **update,
        }
        return MoAConfig.model_validate(data)

    return make
