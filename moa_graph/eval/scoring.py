"""Exact scorers: final answers (GSM8K, MATH, MMLU); IFEval, HumanEval and BFCL by their checks.

Every benchmark's scorer turns a response into metrics (``{"accuracy": 1.0}``); the
first metric of :data:`PRIMARY` decides whether an item counts as correct.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from moa_graph.eval.items import Item

Metrics = dict[str, float]
"""A response's scores by metric name; weighted metrics come with their weight."""

_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\$?\s?\.\d+")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)", re.IGNORECASE)
_LETTER = re.compile(r"\b([ABCD])\b")


def _after_answer_marker(response: str) -> str | None:
    """Return the rest of the line after the last "answer is" / "answer:", or None."""
    marks = list(_ANSWER_IS.finditer(response))
    if not marks:
        return None
    return response[marks[-1].end() :].split("\n", 1)[0].strip()


def normalize_number(text: str) -> str | None:
    """Return a number in canonical form, or None when ``text`` holds none.

    ``"$1,234.50"`` -> ``"1234.5"``; ``"-0.0"`` -> ``"0"``; ``"3/4"`` -> ``"0.75"``;
    ``"50%"`` -> ``"50"``.
    """
    cleaned = text.strip().rstrip(".").replace(",", "").replace("$", "").replace(" ", "")
    cleaned = cleaned.removesuffix("%")
    try:
        value = Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    as_float = float(value)
    return f"{as_float:.6f}".rstrip("0").rstrip(".")


def extract_number(response: str) -> str | None:
    r"""Return the final numeric answer of a GSM8K-style response, normalized.

    Prefers the number after the last "answer is" (or ``####``, or a ``\\boxed{}``),
    else the last number in the text.
    """
    boxed = extract_boxed(response)
    if boxed is not None and (number := normalize_number(_strip_latex(boxed))) is not None:
        return number
    tail = response.rsplit("####", 1)[1] if "####" in response else None
    if tail is None:
        tail = _after_answer_marker(response)
    for text in (tail, response):
        if text and (numbers := _NUMBER.findall(text)):
            candidate = numbers[0] if text is tail else numbers[-1]
            return normalize_number(candidate)
    return None


def score_gsm8k(response: str, reference: str) -> bool:
    """Return whether a response's final number equals the reference number."""
    answer = extract_number(response)
    return answer is not None and answer == normalize_number(reference)


def extract_boxed(response: str) -> str | None:
    r"""Return the contents of the last ``\\boxed{...}`` (nested braces allowed), or None."""
    start = response.rfind("\\boxed")
    if start < 0:
        return None
    brace = response.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for position in range(brace, len(response)):
        if response[position] == "{":
            depth += 1
        elif response[position] == "}":
            depth -= 1
            if depth == 0:
                return response[brace + 1 : position]
    return None


_LATEX_DROP = re.compile(r"\\\$|\\left|\\right|\\!|\\,|\\;|\\:|\\quad|\\displaystyle|\$|\s")
_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_FRAC_SHORT = re.compile(r"\\[dt]?frac(\d)(\d)")
_DEGREES = re.compile(r"\^\{?\\circ\}?")


def _strip_latex(answer: str) -> str:
    text = _TEXT.sub(r"\1", answer)
    text = _LATEX_DROP.sub("", text)
    text = _DEGREES.sub("", text)
    text = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC.sub(r"(\1)/(\2)", text)
    return text.replace("\\%", "").replace("%", "").rstrip(".")


def normalize_math(answer: str) -> str:
    r"""Return a MATH answer in a canonical form for comparison.

    LaTeX spacing, ``\\left``/``\\right``, ``\\text{}``, ``$`` and degree signs are
    dropped, ``\\dfrac``/``\\tfrac`` read as ``\\frac``; a plain number (or a
    fraction of plain numbers) becomes its canonical number.
    """
    text = _strip_latex(answer)
    plain = re.fullmatch(r"\(?(-?[\d.,]+)\)?/\(?(-?[\d.,]+)\)?", text)
    if plain:
        fraction = normalize_number(f"{plain[1]}/{plain[2]}".replace(",", ""))
        if fraction is not None:
            return fraction
    number = normalize_number(text)
    return number if number is not None else text


def score_math(response: str, reference: str) -> bool:
    """Return whether the response's boxed (else last) answer equals the reference."""
    boxed = extract_boxed(response)
    if boxed is None:
        boxed = _after_answer_marker(response)
    if boxed is None:
        return False
    return normalize_math(boxed) == normalize_math(reference)


def extract_letter(response: str) -> str | None:
    """Return the option letter an MMLU response chose, or None.

    Prefers "answer is X" / "Answer: X", then a response that starts with a letter,
    then the last standalone letter A-D.
    """
    text = response.strip()
    tail = _after_answer_marker(text)
    if tail and (letter := _LETTER.search(tail.replace("(", " ").replace(")", " "))):
        return letter[1]
    if first := re.match(r"\(?([ABCD])\b[).:]?", text):
        return first[1]
    letters = _LETTER.findall(text)
    return letters[-1] if letters else None


def score_mmlu(response: str, reference: str) -> bool:
    """Return whether the response chose the reference letter."""
    return extract_letter(response) == reference.strip().upper()


_BY_REFERENCE: dict[str, Callable[[str, str], bool]] = {
    "gsm8k": score_gsm8k,
    "math": score_math,
    "mmlu": score_mmlu,
}

PRIMARY = {"ifeval": "prompt_strict", "humaneval": "pass@1"}
"""The metric that decides an item's ``correct``, where it is not ``accuracy``."""

WEIGHTS = {"instruction_strict": "instructions", "instruction_loose": "instructions"}
"""Metrics averaged over what another metric counts (IFEval's instruction level)."""


def has_scorer(dataset: str) -> bool:
    """Return whether a benchmark is scored exactly, without a judge."""
    return dataset in _BY_REFERENCE or dataset in PRIMARY or is_bfcl(dataset)


def is_bfcl(dataset: str) -> bool:
    """Return whether a benchmark name is a BFCL subset (``bfcl:<subset>``)."""
    return dataset.startswith("bfcl:")


def score(
    dataset: str, response: str, item: Item, calls: Sequence[dict[str, Any]] | None = None
) -> Metrics | None:
    """Return a response's metrics on a benchmark item, or None without a scorer.

    HumanEval runs the code in a separate process (seconds): call it from a thread
    in async code. BFCL scores ``calls``, the answer's tool calls
    (``{"name": ..., "arguments": {...}}``), not its text.
    """
    if is_bfcl(dataset):
        from moa_graph.eval.bfcl import score_bfcl
        from moa_graph.eval.datasets import fetch_dataset_file

        return score_bfcl(calls, item, fetch_dataset_file(dataset))
    if dataset in _BY_REFERENCE:
        if item.reference is None:
            return None
        return {"accuracy": float(_BY_REFERENCE[dataset](response, item.reference))}
    if dataset == "ifeval":
        from moa_graph.eval.ifeval import score_ifeval

        return score_ifeval(response, item)
    if dataset == "humaneval":
        from moa_graph.eval.humaneval import score_humaneval

        return score_humaneval(response, item)
    return None


def is_correct(dataset: str, metrics: Metrics) -> bool:
    """Return whether metrics count as a correct answer (the primary metric is 1)."""
    return metrics[PRIMARY.get(dataset, "accuracy")] == 1.0
