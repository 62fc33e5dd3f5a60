from __future__ import annotations

import pytest

from moa_graph.eval.scoring import (
    extract_boxed,
    extract_letter,
    extract_number,
    normalize_math,
    normalize_number,
    score_gsm8k,
    score_math,
    score_mmlu,
)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1,234.50", "1234.5"),
        ("$18", "18"),
        ("-0.0", "0"),
        ("3/4", "0.75"),
        ("50%", "50"),
        ("7.", "7"),
        ("1,000,000", "1000000"),
        ("twelve", None),
    ],
)
def test_normalize_number(text: str, number: str | None) -> None:
    assert normalize_number(text) == number


@pytest.mark.parametrize(
    ("response", "reference", "right"),
    [
        ("She sells 9 eggs at $2, so 9 * 2 = 18.\nThe answer is 18", "18", True),
        ("Total: $1,234.50. The answer is $1,234.5.", "1234.5", True),
        ("#### 72", "72", True),
        ("The answer is -3 degrees, not 5.", "-3", True),
        ("The answer is 18. Check: 18 - 4 = 14", "18", True),  # not the last number
        ("5 apples and 7 pears make 12", "12", True),  # no marker: the last number
        ("So we get \\boxed{1,000}.", "1000", True),
        ("The answer is 17", "18", False),
        ("I do not know.", "18", False),
    ],
)
def test_gsm8k(response: str, reference: str, right: bool) -> None:
    assert score_gsm8k(response, reference) is right


def test_extract_number_prefers_the_last_answer_marker() -> None:
    assert extract_number("The answer is 4. Wait, the answer is 5 apples, 6 pears") == "5"


def test_extract_boxed_handles_nested_braces() -> None:
    assert extract_boxed(r"x \boxed{1} then \boxed{\frac{a}{b^{2}}} done") == r"\frac{a}{b^{2}}"
    assert extract_boxed("no box") is None


@pytest.mark.parametrize(
    ("response", "reference", "right"),
    [
        (r"so \boxed{\dfrac{1}{2}}", r"\frac12", True),
        (r"\boxed{0.5}", r"\frac{1}{2}", True),
        (r"\boxed{90^\circ}", "90", True),
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)", True),
        (r"\boxed{\text{(C)}}", r"\text{(C)}", True),
        (r"\boxed{204}", "204", True),
        (r"\boxed{\$1,000}", "1000", True),
        (r"\boxed{3}", "4", False),
        ("The answer is 204", "204", True),
        ("no final answer", "204", False),
    ],
)
def test_math(response: str, reference: str, right: bool) -> None:
    assert score_math(response, reference) is right


def test_normalize_math_keeps_expressions() -> None:
    assert normalize_math(r"2\sqrt{3}") == normalize_math(r"2 \sqrt{3}")
    assert normalize_math(r"x^2+1") != normalize_math(r"x^2-1")


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("The answer is (B).", "B"),
        ("C. Paris is the capital.", "C"),
        ("Answer: A", "A"),
        ("(D)", "D"),
        ("I think it is D", "D"),
        ("None of them.", None),
    ],
)
def test_mmlu_letter(response: str, letter: str | None) -> None:
    assert extract_letter(response) == letter
    assert score_mmlu(response, "B") is (letter == "B")
