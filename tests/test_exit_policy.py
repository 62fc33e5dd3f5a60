"""Early exit is part of a run's plan: the planner builds it, the checks read only the plan."""

from __future__ import annotations

import dataclasses
from typing import Any

from langchain_core.messages import HumanMessage

from moa_graph import MoAConfig
from moa_graph.graph import early_exit
from moa_graph.graph.plan import ExitPolicy
from moa_graph.graph.planner import Planner
from moa_graph.graph.state import MoAState, Proposal


def config(fake_model: Any, **settings: Any) -> MoAConfig:
    return MoAConfig(
        layers=[[fake_model(name) for name in "abc"]],
        aggregator=fake_model("agg"),
        name="ee",
        **settings,
    )


def proposal(index: int, content: str) -> Proposal:
    return Proposal(turn=1, layer=1, index=index, agent="abc"[index], model="m", content=content)


def test_the_plan_carries_the_config_early_exit_as_a_frozen_policy(fake_model: Any) -> None:
    settings = {"agree": "answer", "quorum": 0.6, "stages": [2], "stop_unchanged": True}
    plan = Planner(config(fake_model, early_exit=settings, check_code=True)).plan()

    assert plan.exit == ExitPolicy(
        agree="answer",
        quorum=0.6,
        min_similarity=0.8,
        stages=(2,),
        stop_unchanged=True,
        check_code=True,
    )
    assert hash(plan.exit) == hash(dataclasses.replace(plan.exit))  # hashable, by value
    assert early_exit.runs_code(plan)
    assert Planner(config(fake_model)).plan().exit is None


def test_a_check_decides_from_the_plan_alone(fake_model: Any) -> None:
    plan = Planner(config(fake_model, early_exit={"agree": "answer"})).plan()
    (check,) = early_exit.checks([[agent.node for agent in plan.layers[0]]], ())
    state: MoAState = {  # type: ignore[typeddict-item]
        "messages": [HumanMessage("Q?")],
        "proposals": [proposal(i, "The answer is 42") for i in range(3)],
    }

    decided = early_exit.decide(plan, state, check)
    assert decided is not None and decided["action"] == "answer"
    assert decided["reason"] == "3 of 3 proposals state the answer 42"
    # the same proposals, a plan whose run may not leave early (an answer format, say)
    assert early_exit.decide(dataclasses.replace(plan, exit=None), state, check) is None
