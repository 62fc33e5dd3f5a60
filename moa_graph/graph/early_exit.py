"""Early exit and staged proposers: when a layer's proposals end the run early.

A graph whose config sets ``early_exit`` (:class:`~moa_graph.config.model.EarlyExit`) runs
each proposer layer in stages and puts a *check* node after each stage. The planner
turns those settings into the run's :class:`~moa_graph.graph.plan.ExitPolicy` (none
when the run's answer is the aggregator's to write); a check reads it from the run's
plan, looks at the layer's proposals so far and decides, by the agreement the
``consensus`` and ``auto`` aggregations use (:mod:`moa_graph.strategies.agreement`):

- they agree (at least ``quorum`` of them, and two): the most agreed proposal is the
  answer; the later stages and layers and the aggregator are skipped (``answer``);
- the layer is complete and its answer is the previous layer's (``stop_unchanged``):
  the later layers are skipped and the aggregator runs on this layer (``aggregate``);
- otherwise the next stage, the next layer or the aggregator runs, as without checks.

With tools bound, proposals agree when they make equal tool calls
(:func:`moa_graph.calls.tool_calls.vote`); the answer is then those calls, and any other
agreement leaves the answer to the aggregator, which is bound to the tools.

The decision is written to the state (``exit``, a :class:`~moa_graph.graph.state.RunExit`)
and to the progress events (``early_exit``) before the graph follows it, so a run
stopped after a check resumes on its path. :mod:`moa_graph.graph.build` wires the nodes;
this module decides.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langgraph.config import get_stream_writer

from moa_graph.calls.tool_calls import ToolSet, vote
from moa_graph.graph.plan import AgentPlan, ExitPolicy, MoAPlan
from moa_graph.graph.state import ExitedEarly, MoAState, Proposal, RunExit, user_turn
from moa_graph.strategies import agreement, code_check

EXIT_NODE = "early_exit"
"""The node that answers with the agreed proposal when a check ends the run."""

Route = Literal["answer", "aggregate", "next"]
"""Where a check sends the run: the agreed answer, the aggregator, or on."""


def stages(width: int, sizes: Sequence[int]) -> list[range]:
    """Return the agent indices of each stage of a layer of ``width`` agents.

    ``sizes`` are the first stages' sizes; the rest of the layer is the last stage.
    """
    bounds = [0, *itertools.accumulate(sizes), width]
    return [range(start, end) for start, end in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class Check:
    """A check: after stage ``stage`` (from 1) of proposer layer ``layer`` (from 1).

    Attributes:
        layer: The proposer layer.
        stage: The stage of that layer.
        last: Whether it is the layer's last stage.
        staged: Whether the layer has more than one stage.
        after: The nodes of the stage, which the check waits for.
        then: The nodes that run next when the run goes on: the layer's next stage,
            or the next layer's first (none after the last layer).
    """

    layer: int
    stage: int
    last: bool
    staged: bool
    after: tuple[str, ...]
    then: tuple[str, ...]

    @property
    def node(self) -> str:
        """The check's node name, e.g. ``check/layer1/stage1`` (``check/layer1`` unstaged)."""
        stage = f"/stage{self.stage}" if self.staged else ""
        return f"check/layer{self.layer}{stage}"


def checks(layers: Sequence[Sequence[str]], sizes: Sequence[int]) -> list[Check]:
    """Return the checks of a graph whose layers' nodes are ``layers``, staged by ``sizes``."""
    staged = [
        [tuple(names[i] for i in part) for part in stages(len(names), sizes)] for names in layers
    ]
    found = []
    for number, parts in enumerate(staged, 1):
        following = staged[number][0] if number < len(staged) else ()
        for stage, part in enumerate(parts, 1):
            last = stage == len(parts)
            then = following if last else parts[stage]
            found.append(Check(number, stage, last, len(parts) > 1, part, then))
    return found


@dataclass(frozen=True)
class Agreement:
    """The largest group of proposals that agree: its most agreed one and its size."""

    chosen: int  # the proposal's index in its layer
    count: int
    what: str  # what they agree on, e.g. "state the answer 42"


def agreement_of(
    policy: ExitPolicy,
    proposals: Sequence[Proposal],
    prompt: str = "",
    tools: ToolSet | None = None,
) -> Agreement | None:
    """Return the largest group of ``proposals`` that agree, or None below two answers.

    Stated final answers are voted on (ties to the first proposal, as ``consensus``
    does); with the policy's ``check_code``, code agrees when it passes every example in ``prompt``
    (unless ``agree`` is ``similar``); texts agree with the most agreed one when at least
    ``min_similarity`` alike. With ``tools``, only equal calls of them agree.
    """
    answered = [p for p in proposals if p.ok]
    texts = [p.content for p in answered]
    if len(texts) < 2:
        return None
    if tools is not None:
        calls = vote(texts, tools)
        if calls is None:
            return None
        names = ", ".join(sorted({call["name"] for call in calls.calls}))
        return Agreement(answered[calls.chosen].index, calls.votes, f"make equal calls of {names}")
    if policy.check_code and policy.agree != "similar" and agreement.kind_of(texts) == "code":
        checked = _by_examples(prompt, texts)
        if checked is not None:
            chosen, count, what = checked
            return Agreement(answered[chosen].index, count, what)
    if _by_answer(policy, texts):
        answer, count, first = agreement.answer_majority(texts)
        if answer is None:
            return None
        return Agreement(answered[first].index, count, f"state the answer {answer}")
    best = agreement.most_agreed(texts)
    count = sum(
        i == best or agreement.similarity(texts[best], text) >= policy.min_similarity
        for i, text in enumerate(texts)
    )
    return Agreement(answered[best].index, count, f"are at least {policy.min_similarity:g} alike")


def _by_examples(prompt: str, texts: Sequence[str]) -> tuple[int, int, str] | None:
    """Return the most agreed code of those passing all of the prompt's examples, how many.

    None when the prompt has no examples to run.
    """
    total = len(code_check.prompt_examples(prompt))
    passed = code_check.examples_passed(prompt, texts) if total else None
    if passed is None:
        return None
    passing = [i for i, count in enumerate(passed) if count == total]
    chosen = agreement.most_agreed(texts, among=passing) if passing else 0
    return chosen, len(passing), f"pass all {total} of the prompt's examples"


def unchanged(
    policy: ExitPolicy, layer: int, before: Sequence[Proposal], after: Sequence[Proposal]
) -> str | None:
    """Return why layer ``layer`` (``after``) did not change the answer of the one before.

    Returns None when it did: another majority answer, or a most agreed text less than
    ``min_similarity`` alike the previous layer's.
    """
    old = [p.content for p in before if p.ok]
    new = [p.content for p in after if p.ok]
    if not old or not new:
        return None
    if _by_answer(policy, [*old, *new]):
        answer = agreement.answer_majority(new)[0]
        if answer is None or answer != agreement.answer_majority(old)[0]:
            return None
        return f"layer {layer} keeps the answer {answer} of layer {layer - 1}"
    alike = agreement.similarity(old[agreement.most_agreed(old)], new[agreement.most_agreed(new)])
    if alike < policy.min_similarity:
        return None
    return f"layer {layer}'s most agreed proposal is {alike:.2f} alike layer {layer - 1}'s"


def decide(plan: MoAPlan, state: MoAState, check: Check) -> RunExit | None:
    """Return how the run of ``plan`` leaves its layers at ``check``, or None to go on.

    The plan's ``exit`` policy says when proposals end the run (None: never). With
    tools bound (the aggregator's ``tool_set``), proposals agree only on calls, and a
    layer that did not change its answer does not stop the stack.
    """
    policy, tools, depth = plan.exit, plan.aggregator.tool_set, len(plan.layers)
    if policy is None:
        return None
    turn = user_turn(state["messages"])
    layer = _proposals(state, turn, check.layer)
    if tools is not None and policy.first_decides(tools) and check.layer == 1:
        return _first_calls(turn, check, layer, tools)
    prompt = state["messages"][-1].text
    found = agreement_of(policy, layer, prompt, tools)
    needed = max(2, math.ceil(policy.quorum * len(layer) - 1e-9))
    if found is not None and found.count >= needed:
        reason = f"{found.count} of {len(layer)} proposals {found.what}"
        return _record(turn, check, "answer", found.chosen, reason)
    if check.last and policy.stop_unchanged and tools is None and 1 < check.layer < depth:
        before = _proposals(state, turn, check.layer - 1)
        reason_or_none = unchanged(policy, check.layer, before, layer)
        if reason_or_none is not None:
            return _record(turn, check, "aggregate", None, reason_or_none)
    return None


def _first_calls(turn: int, check: Check, layer: Sequence[Proposal], tools: ToolSet) -> RunExit:
    """Leave after the first proposal: with its calls, else to the aggregator."""
    first = next((p for p in layer if p.index == 0 and p.ok), None)
    calls = None if first is None else vote([first.content], tools)
    if first is not None and calls is not None:
        names = ", ".join(sorted({call["name"] for call in calls.calls}))
        return _record(turn, check, "answer", 0, f"the first proposal calls {names}")
    return _record(turn, check, "aggregate", None, "the first proposal makes no call")


def runs_code(plan: MoAPlan) -> bool:
    """Whether the checks of ``plan`` may run proposed code (processes: off an event loop)."""
    return plan.exit is not None and plan.exit.check_code


def check_node(plan: MoAPlan, state: MoAState, check: Check) -> Any:
    """Run a check node: decide, announce a decision to leave, and record it."""
    record = decide(plan, state, check)
    if record is not None:
        get_stream_writer()(
            ExitedEarly(
                event="early_exit",
                moa_layer=record["layer"],
                moa_stage=record["stage"],
                moa_action=record["action"],
                moa_chosen=record["chosen"],
                moa_reason=record["reason"],
            )
        )
    return {"exit": record}


def route(state: MoAState, check: Check, depth: int) -> Route:
    """Return where the run goes after ``check``, from the decision it recorded."""
    record = exit_of(state)
    if record is not None:
        return record["action"]
    return "aggregate" if check.last and check.layer >= depth else "next"


def exit_of(state: MoAState) -> RunExit | None:
    """Return how the latest turn left its layers early, or None if it did not."""
    record = state.get("exit")
    return record if record and record["turn"] == user_turn(state["messages"]) else None


def aggregator_of(agent: AgentPlan | None, state: MoAState) -> AgentPlan | None:
    """Return the aggregator as it runs: on the layer that stopped the stack, if one did."""
    record = exit_of(state)
    if agent is None or record is None or record["action"] != "aggregate":
        return agent
    return dataclasses.replace(agent, layer=record["layer"] + 1)


def answer(state: MoAState, tools: ToolSet | None = None) -> dict[str, Any]:
    """Run the exit node: answer with the agreed proposal; ``usage`` sums the turn's calls.

    With ``tools``, the agreed proposal's calls are the answer.

    Raises:
        RuntimeError: No check of the latest turn decided to answer.
    """
    record = exit_of(state)
    if record is None or record["chosen"] is None:
        raise RuntimeError("the early exit node ran without an agreed proposal")
    turn = record["turn"]
    proposals = [p for p in state.get("proposals", []) if p.turn == turn]
    chosen = next(
        p for p in proposals if p.layer == record["layer"] and p.index == record["chosen"]
    )
    zero = UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)
    total = zero
    for proposal in proposals:
        total = add_usage(total, proposal.usage)
    metadata = {
        "moa_strategy": "early_exit",
        "moa_chosen": chosen.index,
        "moa_agent": chosen.agent,
        "moa_exit_layer": record["layer"],
        "moa_exit_stage": record["stage"],
        "moa_exit_reason": record["reason"],
    }
    calls = None if tools is None else tools.proposed(chosen.content)
    if calls is not None:
        metadata["finish_reason"] = "tool_calls"
        message = AIMessage("", tool_calls=calls, usage_metadata=zero, response_metadata=metadata)
    else:
        message = AIMessage(chosen.content, usage_metadata=zero, response_metadata=metadata)
    return {"messages": [message], "usage": total}


def _record(
    turn: int, check: Check, action: Literal["answer", "aggregate"], chosen: int | None, reason: str
) -> RunExit:
    return RunExit(
        turn=turn, layer=check.layer, stage=check.stage, action=action, chosen=chosen, reason=reason
    )


def _by_answer(policy: ExitPolicy, texts: Sequence[str]) -> bool:
    """Whether proposals agree by their stated answers (else by their text)."""
    return policy.agree == "answer" or (
        policy.agree == "auto" and agreement.kind_of(texts) == "answer"
    )


def _proposals(state: MoAState, turn: int, layer: int) -> list[Proposal]:
    """Return the proposals of ``layer`` to the user turn ``turn`` so far."""
    return [p for p in state.get("proposals", []) if p.turn == turn and p.layer == layer]
