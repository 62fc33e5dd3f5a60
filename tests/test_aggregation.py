from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from moa_graph.aggregation import (
    chosen,
    final_answer,
    majority,
    parse_rank,
    rank_messages,
    vote_hint,
    voted,
)
from moa_graph.graph import create_moa


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
