from __future__ import annotations

import pytest

from moa_graph.strategies.agreement import (
    answer_majority,
    kind_of,
    most_agreed,
    similarity,
    stated_answer,
)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("She has 3 apples, then 4 more.\nThe answer is 1,000.50", "1000.5"),
        ("Reasoning...\n#### 18", "18"),
        ("so the total is \\boxed{42}", "42"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("Final answer: (C) because of osmosis", "C"),
        ("B", "B"),
        ("  -7.", "-7"),
        # numbers and letters inside prose or code are not stated answers
        ("I bought 3 apples and 2 pears for the party.", None),
        ("A cat.", None),
        ("```python\ndef f(x):\n    return x + 1\n```", None),
    ],
)
def test_stated_answer(text: str, answer: str | None) -> None:
    assert stated_answer(text) == answer


def test_kind_of_proposals() -> None:
    code = "Here:\n```python\ndef f():\n    return 1\n```"
    assert kind_of(["The answer is 4", "The answer is 5", "a poem"]) == "answer"
    assert kind_of([code, code, "The answer is 4"]) == "code"
    assert kind_of(["Leaves fall, 3 of them", "Red and gold", code]) == "text"


def test_answer_majority_ignores_responses_without_an_answer() -> None:
    assert answer_majority(["no idea", "The answer is 6", "#### 6", "The answer is 5"]) == (
        "6",
        2,
        1,
    )
    assert answer_majority(["The answer is 7", "The answer is 8"]) == ("7", 1, 0)
    assert answer_majority(["nothing", "stated"]) == (None, 0, 0)
    with pytest.raises(ValueError, match="no proposals"):
        answer_majority([])


def test_similarity_and_the_most_agreed_text() -> None:
    assert similarity("the cat sat", "the cat sat") == 1.0
    assert similarity("the cat sat", "dogs run far") == 0.0
    assert 0 < similarity("the cat sat on the mat", "the cat lay on the mat") < 1
    texts = [
        "Autumn leaves fall in red and gold",
        "Red and gold, the autumn leaves fall down",
        "Stock prices rose sharply on Tuesday",
    ]
    assert most_agreed(texts) in (0, 1)
    assert most_agreed(texts, among=[2]) == 2
    assert most_agreed(["same", "same"]) == 0  # ties go to the first
    with pytest.raises(ValueError, match="no proposals"):
        most_agreed(texts, among=[])
