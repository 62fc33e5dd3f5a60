"""Tool calls written as text: which replies are calls, and when two calls are equal."""

from __future__ import annotations

import time
from typing import Any

import pytest

from moa_graph.calls.tool_calls import ToolSet, calls_key, vote
from tests.tool_schemas import MULTIPLY, SEARCH


def tools(**options: Any) -> ToolSet:
    found = ToolSet.of([MULTIPLY, SEARCH], **options)
    assert found is not None
    return found


def called(text: str, **options: Any) -> list[tuple[str, dict[str, Any]]] | None:
    calls = tools(**options).parse(text)
    return None if calls is None else [(c["name"], c["args"]) for c in calls]


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "multiply", "arguments": {"a": 17, "b": 23}}',
        '  ```json\n{"name": "multiply", "arguments": {"a": 17, "b": 23}}\n```\n',
        '<tool_call>\n{"name": "multiply", "arguments": {"a": 17, "b": 23}}\n</tool_call>',
        '{"name": "multiply", "arguments": "{\\"a\\": 17, \\"b\\": 23}"}',
        '[{"name": "multiply", "parameters": {"a": 17, "b": 23}}]',
    ],
)
def test_a_reply_made_of_a_call_is_that_call(text: str) -> None:
    assert called(text) == [("multiply", {"a": 17, "b": 23})]


def test_several_calls_bare_fenced_and_tagged_are_all_read_in_order() -> None:
    text = (
        '<tool_call>{"name": "search_docs", "arguments": {"query": "refunds"}}</tool_call>\n'
        '```\n{"name": "multiply", "arguments": {"a": 1, "b": 2}}\n'
        '{"name": "multiply", "arguments": {"a": 3, "b": 4}}\n```'
    )
    assert called(text) == [
        ("search_docs", {"query": "refunds"}),
        ("multiply", {"a": 1, "b": 2}),
        ("multiply", {"a": 3, "b": 4}),
    ]
    assert called(text, parallel_tool_calls=False) is None


@pytest.mark.parametrize(
    "text",
    [
        "The answer is 391.",
        '{"name": "say_hello", "arguments": {}}',  # a made-up tool
        '{"name": "multiply", "arguments": {"a": "17", "b": 23}}',  # not an integer
        '{"name": "multiply", "arguments": {"a": 17}}',  # a required argument missing
        'I will call {"name": "multiply", "arguments": {"a": 17, "b": 23}}',
        '{"name": "multiply", "arguments": {"a": 17, "b": 23}} and that is all',
        '{"name": "multiply", "arguments": {"a": 17, "b": 23}',  # cut off
        '{"name": "multiply", "arguments": {"a": 17, "b": 23}, "why": "asked"}',
        '{"a": 17, "b": 23}',
        "```python\nprint(17 * 23)\n```",
        '<tool_call>{"name": "multiply", "arguments": {"a": 1, "b": 2}}',
        '{"name": "multiply", "arguments": {"a": NaN, "b": 23}}',
        "",
        "[]",
    ],
)
def test_anything_else_is_text(text: str) -> None:
    assert called(text) is None


def test_tool_choice_none_allows_no_call_and_a_named_tool_only_that_one() -> None:
    assert ToolSet.of([MULTIPLY], "none") is None
    search_only = ToolSet.of(
        [MULTIPLY, SEARCH], {"type": "function", "function": {"name": "search_docs"}}
    )
    assert search_only is not None
    assert search_only.parse('{"name": "multiply", "arguments": {"a": 1, "b": 2}}') is None
    assert search_only.parse('{"name": "search_docs", "arguments": {"query": "x"}}') is not None


def test_reading_is_linear_in_the_reply() -> None:
    """Deep nesting and long runs of openings are text, read in one pass."""
    hostile = ["[" * 200_000, "{" * 200_000, "```" * 100_000, "<tool_call>" * 50_000]
    many = '{"name": "multiply", "arguments": {"a": 1, "b": 2}}\n' * 20_000
    started = time.perf_counter()
    for text in hostile:
        assert called(text) is None
    assert len(called(many) or []) == 20_000
    assert time.perf_counter() - started < 5  # quadratic reading would take minutes


def test_equal_calls_share_a_key_whatever_the_order_and_number_writing() -> None:
    first = tools().parse('{"name": "multiply", "arguments": {"a": 17, "b": 23}}')
    second = tools().parse('{"arguments": {"b": 23.0, "a": 17}, "name": "multiply"}')
    other = tools().parse('{"name": "multiply", "arguments": {"a": 17, "b": 24}}')
    assert first and second and other
    assert calls_key(first) == calls_key(second) != calls_key(other)


def test_true_is_not_one() -> None:
    schema = {"type": "object", "properties": {"x": {}}}
    anything = ToolSet.of([{"name": "f", "parameters": schema}])
    assert anything is not None
    one = anything.parse('{"name": "f", "arguments": {"x": 1}}')
    true = anything.parse('{"name": "f", "arguments": {"x": true}}')
    assert one and true and calls_key(one) != calls_key(true)


CALL = '{{"name": "multiply", "arguments": {{"a": {a}, "b": {b}}}}}'


def test_two_equal_calls_of_three_win() -> None:
    texts = [CALL.format(a=1, b=2), CALL.format(a=17, b=23), CALL.format(a=17, b=23)]
    result = vote(texts, tools())
    assert result is not None
    assert (result.chosen, result.votes, result.callers) == (1, 2, 3)
    assert result.calls[0]["args"] == {"a": 17, "b": 23}


def test_argument_order_and_number_writing_do_not_split_the_vote() -> None:
    texts = [
        CALL.format(a=1, b=2),
        '{"name": "multiply", "arguments": {"b": 23, "a": 17}}',
        CALL.format(a="17.0", b="2.3e1"),
    ]
    result = vote(texts, tools())
    assert result is not None and (result.chosen, result.votes) == (1, 2)


def test_parallel_calls_are_compared_as_multisets() -> None:
    both = CALL.format(a=1, b=2) + "\n" + CALL.format(a=3, b=4)
    swapped = CALL.format(a=3, b=4) + "\n" + CALL.format(a=1, b=2)
    twice = CALL.format(a=1, b=2) + "\n" + CALL.format(a=1, b=2) + "\n" + CALL.format(a=3, b=4)
    result = vote([twice, both, swapped], tools())
    assert result is not None and (result.chosen, result.votes) == (1, 2)


def test_a_tie_goes_to_the_first_proposal() -> None:
    texts = [CALL.format(a=5, b=6), CALL.format(a=1, b=2), CALL.format(a=3, b=4)]
    result = vote(texts, tools())
    assert result is not None and (result.chosen, result.votes) == (0, 1)


def test_no_vote_when_most_proposals_make_no_call() -> None:
    texts = [CALL.format(a=1, b=2), "It is 2.", "The product is 2."]
    assert vote(texts, tools()) is None


def test_a_proposal_proposes_the_calls_in_its_prose() -> None:
    proposal = (
        "To compute it I will use the calculator tool. Here is the call:\n"
        '```json\n{"name": "multiply", "arguments": {"a": 17, "b": 23}}\n```\n'
        "Then the result: 391."
    )
    assert tools().parse(proposal) is None  # as a reply: text
    calls = tools().proposed(proposal)
    assert calls is not None and [(c["name"], c["args"]) for c in calls] == [
        ("multiply", {"a": 17, "b": 23})
    ]
    assert tools().proposed('I would {"name": "say_hello", "arguments": {}} first.') is None
    assert tools().proposed('The point {"x": 1} and {"name": "multiply"} are no calls.') is None
    assert tools().proposed("It is 391.") is None


def test_finding_calls_in_prose_is_linear() -> None:
    hostile = [
        '{"a": "' * 100_000,
        "{" + '"x": 1, ' * 100_000,
        '{"a": [' * 100_000,
        "{ " * 200_000,
        '{"name": "multiply", "arguments": {"a": NaN, "b": 1}} ' * 20_000,
    ]
    started = time.perf_counter()
    for text in hostile:
        assert tools().proposed(text) is None
    assert time.perf_counter() - started < 5
