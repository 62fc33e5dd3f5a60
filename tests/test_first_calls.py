"""``early_exit.tool_calls: first``: with tools bound, the first proposer decides alone.

Its calls are the answer; its text goes to the aggregator, bound to the tools, with no
other proposer asked. Without tools the config exits early as before. Fake proposers
write calls as JSON text, as the local models do.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage

from moa_graph import MoAConfig
from moa_graph.config.model import EarlyExit
from moa_graph.run.chat_model import ChatMoA
from tests.test_call_votes import Make, add, aggregator, call, multiply, proposers

FIRST = EarlyExit(stages=[2], agree="answer", tool_calls="first")
QUESTION = "What is 17 times 23?"


def test_the_first_proposals_calls_are_the_answer_and_no_one_else_is_asked(
    fake_model: Make,
) -> None:
    layer = proposers(fake_model, call("multiply", a=17, b=23), call("add", a=1, b=1), "text")
    agg = aggregator(fake_model)
    config = MoAConfig(layers=[layer], aggregator=agg, aggregation="auto", early_exit=FIRST)

    answer = ChatMoA(config).bind_tools([multiply, add]).invoke(QUESTION)

    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("multiply", {"a": 17, "b": 23})]
    assert answer.response_metadata["moa_strategy"] == "early_exit"
    assert answer.response_metadata["moa_exit_reason"] == "the first proposal calls multiply"
    assert [len(p.calls) for p in layer] == [1, 0, 0] and agg.calls == []


def test_a_first_proposal_in_text_goes_to_the_aggregator_alone(fake_model: Make) -> None:
    # The two others would agree on a call: with `agree`, their vote would be the answer.
    texts = ("I would multiply them.", call("add", a=1, b=1), call("add", a=1, b=1))
    layer = proposers(fake_model, *texts)
    agg = aggregator(fake_model)
    config = MoAConfig(layers=[layer], aggregator=agg, aggregation="auto", early_exit=FIRST)

    answer = ChatMoA(config).bind_tools([multiply, add]).invoke(QUESTION)

    assert isinstance(answer, AIMessage) and answer.text == "the aggregator's own answer"
    assert [len(p.calls) for p in layer] == [1, 0, 0]
    (seen,) = agg.calls  # the aggregator was bound to the tools and saw one reference
    references = seen[0].text
    assert "I would multiply them." in references and '"add"' not in references

    voting = proposers(fake_model, *texts)
    agreeing = MoAConfig(
        layers=[voting], aggregator=agg, aggregation="auto", early_exit=EarlyExit(stages=[2])
    )
    answer = ChatMoA(agreeing).bind_tools([multiply, add]).invoke(QUESTION)
    assert [c["name"] for c in answer.tool_calls] == ["add"]  # `agree`: the two calls win


def test_without_tools_the_config_exits_on_agreeing_answers_as_before(fake_model: Make) -> None:
    layer = proposers(fake_model, "The answer is 391.", "The answer is 391.", "The answer is 7.")
    agg = aggregator(fake_model)
    config = MoAConfig(layers=[layer], aggregator=agg, aggregation="auto", early_exit=FIRST)

    answer = ChatMoA(config).invoke(QUESTION)

    assert answer.text == "The answer is 391."
    assert [len(p.calls) for p in layer] == [1, 1, 0] and agg.calls == []
