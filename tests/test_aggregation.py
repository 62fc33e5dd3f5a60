from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from moa_graph.run.factory import create_moa
from moa_graph.sandbox.execute import run_python
from moa_graph.strategies import code_check
from moa_graph.strategies.aggregation import (
    chosen,
    final_answer,
    majority,
    parse_rank,
    rank_messages,
    vote_hint,
    voted,
)
from tests.event_loop import longest_stall


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so 3 + 4 = 7. The answer is 1,000.50", "1000.5"),
        ("It is -0.0", "0"),
        ("Paris,  the  City", "paris, the city"),
    ],
)
def test_final_answer(text: str, answer: str) -> None:
    assert final_answer(text) == answer


def test_majority_counts_answers_and_breaks_ties_by_order() -> None:
    assert majority(["x is 5", "The answer is 6", "so 6"]) == ("6", 2, 1)
    assert majority(["7", "8"]) == ("7", 1, 0)
    with pytest.raises(ValueError, match="no proposals"):
        majority([])


def test_vote_hint_only_with_agreement() -> None:
    assert "2 of the 3 responses reached the final answer 6" in vote_hint(["6", "5", "6"])
    assert vote_hint(["1", "2", "3"]) == ""
    assert vote_hint(["1"]) == ""


def test_ranker_prompt_and_parsing() -> None:
    messages = rank_messages([HumanMessage("Q?")], ["a", "b"])
    assert messages[0].text == "Q?"
    assert "[Response 2]\nb" in messages[-1].text
    assert parse_rank("Best: 2", 2) == 1
    assert parse_rank("Response 9 is best, then 2", 2) == 1
    assert parse_rank("none", 2) == 0
    reply = AIMessage(
        "Best: 2", usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}
    )
    picked = chosen(reply, ["first", "second"])
    assert picked.text == "second" and picked.usage_metadata == reply.usage_metadata
    assert voted(["a 1", "b 2", "c 2"]).text == "b 2"


def _solver(answers):
    def reply(model, messages):
        return f"The answer is {answers[model.model_name]}"

    return reply


@pytest.mark.parametrize(
    ("aggregation", "answer", "aggregator_calls"),
    [("vote", "The answer is 5", 0), ("rank", "The answer is 4", 1)],
)
def test_strategies_in_the_graph(fake_model, aggregation, answer, aggregator_calls) -> None:
    answers = {"a": 4, "b": 5, "c": 5}
    proposers = [fake_model(n, reply=_solver(answers)) for n in "abc"]
    aggregator = fake_model("agg", reply=lambda model, messages: "Best: 1")
    config = {"layers": [proposers], "aggregator": aggregator, "aggregation": aggregation}
    result = create_moa(config).compile().invoke({"messages": [("user", "2+2?")]})
    assert result["messages"][-1].text == answer
    assert len(aggregator.calls) == aggregator_calls


def test_vote_hint_reaches_the_aggregator(fake_model) -> None:
    proposers = [fake_model(n, reply=_solver({"a": 4, "b": 5, "c": 5})) for n in "abc"]
    aggregator = fake_model("agg")
    config = {"layers": [proposers], "aggregator": aggregator, "aggregation": "vote-hint"}
    create_moa(config).compile().invoke({"messages": [("user", "2+2?")]})
    assert "2 of the 3 responses reached the final answer 5" in aggregator.calls[0][0].text


def _run(fake_model, replies, aggregation, **config):
    proposers = [fake_model(f"p{i}", reply=lambda m, msgs, r=r: r) for i, r in enumerate(replies)]
    aggregator = fake_model("agg", reply=lambda model, messages: "A synthesis")
    config = {"layers": [proposers], "aggregator": aggregator, "aggregation": aggregation, **config}
    result = create_moa(config).compile().invoke({"messages": [("user", PROMPT)]})
    return result, aggregator


PROMPT = '''Complete the function.
```python
from typing import List

def total(xs: List[int]) -> int:
    """Sum a list.
    >>> total([1, 2])
    3
    >>> total([])
    0
    """
```'''
WRONG = "```python\ndef total(xs: List[int]) -> int:\n    return len(xs)\n```"
RIGHT = "Sure.\n```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```"
POEMS = [
    "Stock prices rose on Tuesday",
    "Red and gold, the leaves drift down to the ground",  # shares most with both others
    "The leaves drift down",
]


@pytest.mark.parametrize(
    ("aggregation", "replies", "answer", "how", "aggregator_calls"),
    [
        (
            "consensus",
            ["The answer is 4", "The answer is 5", "#### 5"],
            "The answer is 5",
            "vote",
            0,
        ),
        ("auto", ["The answer is 4", "The answer is 5", "#### 5"], "The answer is 5", "vote", 0),
        ("consensus", POEMS, POEMS[1], "similarity", 0),
        ("auto", POEMS, "A synthesis", None, 1),
    ],
)
def test_consensus_and_auto_in_the_graph(
    fake_model, aggregation, replies, answer, how, aggregator_calls
) -> None:
    result, aggregator = _run(fake_model, replies, aggregation)
    message = result["messages"][-1]
    assert message.text == answer
    assert message.response_metadata.get("moa_strategy") == how
    assert len(aggregator.calls) == aggregator_calls
    # proposals and usage are recorded as for every strategy: 3 proposals of 15 tokens
    assert [p.content for p in result["proposals"]] == replies
    assert result["usage"]["total_tokens"] == 45 + 15 * aggregator_calls


async def test_an_async_run_checks_code_off_the_event_loop(fake_model) -> None:
    # the proposal computes for 0.8 s per example, 1.6 s in all: a check on the loop stalls
    # it (the sandbox's sleeps return at once, so it spins on the clock)
    spin = "end = time.monotonic() + 0.8\n    while time.monotonic() < end:\n        pass"
    spin = f"import time\n    {spin}"
    slow = RIGHT.replace("return sum(xs)", f"{spin}\n    return sum(xs)")
    proposers = [
        fake_model(f"p{i}", reply=lambda m, msgs, r=r: r) for i, r in enumerate([slow, WRONG])
    ]
    config = {"layers": [proposers], "aggregator": fake_model("agg"), "aggregation": "consensus"}
    graph = create_moa({**config, "check_code": True}).compile()
    result, stall = await longest_stall(graph.ainvoke({"messages": [("user", PROMPT)]}))
    assert result["messages"][-1].response_metadata["moa_examples_passed"] == [2, 1]
    assert stall < 1.0


@pytest.mark.parametrize("aggregation", ["consensus", "auto"])
def test_code_is_checked_against_the_prompts_examples(fake_model, aggregation) -> None:
    result, aggregator = _run(fake_model, [WRONG, WRONG, RIGHT], aggregation, check_code=True)
    message = result["messages"][-1]
    assert message.text == RIGHT
    assert message.response_metadata["moa_examples_passed"] == [1, 1, 2]  # total([]) == 0 passes
    assert aggregator.calls == []


@pytest.fixture
def sandbox_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The programs the code checks send to the sandbox, in order."""
    runs: list[str] = []

    def counted(program: str, **limits: float) -> object:
        runs.append(program)
        return run_python(program, **limits)

    monkeypatch.setattr(code_check, "run_python", counted)
    return runs


def test_a_run_checks_each_program_once(fake_model, sandbox_runs) -> None:
    # stage 2 checks two proposals and disagrees, the third repeats the first, and the
    # aggregator checks all three: two distinct programs, so two sandboxed runs
    proposers = [
        fake_model(f"p{i}", reply=lambda m, msgs, r=r: r)
        for i, r in enumerate([WRONG, RIGHT, WRONG])
    ]
    config = {"layers": [proposers], "aggregator": fake_model("agg"), "aggregation": "auto"}
    early = {"stages": [2], "agree": "answer"}
    graph = create_moa({**config, "check_code": True, "early_exit": early}).compile()
    result = graph.invoke({"messages": [("user", PROMPT)]})
    assert result["messages"][-1].text == RIGHT
    assert result["messages"][-1].response_metadata["moa_examples_passed"] == [1, 2, 1]
    assert len(sandbox_runs) == 2


def test_a_program_that_ran_out_of_time_is_checked_again(sandbox_runs) -> None:
    endless = "```python\ndef total(xs):\n    while True:\n        pass\n```"
    for _ in range(2):
        assert code_check.examples_passed(PROMPT, [endless, RIGHT], timeout_s=0.5) == [0, 2]
    assert len(sandbox_runs) == 3  # the endless program twice, the passing one once


def test_code_is_never_run_unless_asked(fake_model) -> None:
    result, _ = _run(fake_model, [WRONG, WRONG, RIGHT], "auto")
    assert result["messages"][-1].text == WRONG  # the most agreed proposal
    assert result["messages"][-1].response_metadata["moa_strategy"] == "similarity"


def test_unknown_aggregation_is_a_config_error() -> None:
    from moa_graph.config.model import config_from_data
    from moa_graph.errors import ConfigError

    with pytest.raises(ConfigError, match="aggregation"):
        config_from_data({"layers": [["openai:a"]], "aggregator": "openai:b", "aggregation": "x"})


def test_the_display_says_how_the_answer_came_about(fake_model) -> None:
    from moa_graph.cli.display import how_answered

    voted_result, _ = _run(fake_model, ["The answer is 4", "#### 5", "The answer is 5"], "auto")
    assert how_answered(voted_result["messages"][-1]) == (
        "the answer is proposal 2 of the last layer, chosen by a vote of their final answers"
    )
    synthesized, _ = _run(fake_model, POEMS, "auto")
    assert how_answered(synthesized["messages"][-1]) == (
        "the aggregator wrote the answer from the last layer's proposals"
    )
