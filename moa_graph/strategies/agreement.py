r"""How alike proposals are: stated final answers, kinds of response, and text overlap.

The ``consensus`` and ``auto`` aggregations decide with these measures, and they need
no model call:

- a *stated answer* is what a response explicitly gives as its final answer
  (``The answer is 42``, ``\boxed{x}``, ``#### 7``, or a response that is only a
  number or an option letter); numbers inside prose or code are not answers;
- the *kind* of a set of proposals is ``answer`` when most state one, ``code`` when
  most carry a fenced code block, and ``text`` otherwise;
- *similarity* of two texts is the mean of their word and word-pair F1 overlaps (the
  ROUGE-1 and ROUGE-2 F-measures that minimum-Bayes-risk selection uses), which
  rewards shared content and shared phrasing while ignoring word order at large.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

Kind = Literal["answer", "code", "text"]
"""What a set of proposals holds: stated final answers, code, or other text."""

_ANSWER_MARK = re.compile(r"(?:final\s+)?answer\s*(?:is|:)\s*", re.IGNORECASE)
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_LETTER = re.compile(r"\(?([A-E])\)?(?:[.:)]|\s|$)")
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_LONE = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|\(?[A-E]\)?")  # a response that is only that
_FENCE = re.compile(r"```")
_WORD = re.compile(r"\w+")


def _normal_number(text: str) -> str:
    number = text.replace(",", "").replace("$", "")
    if "." in number and "/" not in number:
        number = number.rstrip("0").rstrip(".")
    return "0" if number in ("-0", "") else number


def _answer_in(tail: str) -> str | None:
    """Return the answer at the start of ``tail``: a number, an option letter, or None."""
    tail = tail.strip().lstrip("*").strip()
    if number := _NUMBER.match(tail):
        return _normal_number(number[0])
    if letter := _LETTER.match(tail):
        return letter[1]
    return None


def stated_answer(text: str) -> str | None:
    r"""Return the final answer a response states, normalized, or None if it states none.

    Args:
        text: A response.

    Returns:
        A number in canonical form (``"1,000.50"`` -> ``"1000.5"``), an option letter,
        or the normalized contents of the last ``\boxed{}``.
    """
    if boxed := _BOXED.findall(text):
        content = boxed[-1].strip()
        return _answer_in(content) if _NUMBER.fullmatch(content) else content.replace(" ", "")
    if "####" in text:
        return _answer_in(text.rsplit("####", 1)[1])
    marks = list(_ANSWER_MARK.finditer(text))
    if marks:
        return _answer_in(text[marks[-1].end() :].split("\n", 1)[0])
    lone = _LONE.fullmatch(text.strip().rstrip("."))
    return None if lone is None else _answer_in(lone[0])


def kind_of(texts: Sequence[str]) -> Kind:
    """Return what most of the proposals hold: stated answers, code, or other text."""
    half = len(texts) / 2
    if sum(stated_answer(t) is not None for t in texts) > half:
        return "answer"
    if sum(len(_FENCE.findall(t)) >= 2 for t in texts) > half:
        return "code"
    return "text"


def answer_majority(texts: Sequence[str]) -> tuple[str | None, int, int]:
    """Return the most stated answer, how many state it, and the first one's index.

    Responses that state no answer vote for nothing; ties go to the answer stated
    first, so the first proposal (e.g. the greedy one) wins a tie.

    Raises:
        ValueError: ``texts`` is empty.
    """
    if not texts:
        raise ValueError("there are no proposals to vote on")
    answers = [stated_answer(t) for t in texts]
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0, 0
    best = max(counts, key=lambda a: (counts[a], -answers.index(a)))
    return best, counts[best], answers.index(best)


_Grams = tuple[Counter[Any], Counter[Any]]  # words, then pairs of adjacent words


def _grams(text: str) -> _Grams:
    words = _WORD.findall(text.lower())
    return Counter(words), Counter(itertools.pairwise(words))


def _f1(a: Counter[Any], b: Counter[Any]) -> float:
    total = a.total() + b.total()
    return 2 * (a & b).total() / total if total else 0.0


def _similarity(a: _Grams, b: _Grams) -> float:
    return (_f1(a[0], b[0]) + _f1(a[1], b[1])) / 2


def similarity(a: str, b: str) -> float:
    """Return how alike two texts are, from 0 (nothing shared) to 1 (the same words).

    The mean of the word (unigram) and word-pair (bigram) F1 overlaps.
    """
    return _similarity(_grams(a), _grams(b))


def most_agreed(texts: Sequence[str], among: Sequence[int] | None = None) -> int:
    """Return the index of the text most similar to all the others (their medoid).

    Args:
        texts: The proposals.
        among: Only these indices may be chosen (all by default); every text still
            counts as one the choice must agree with.

    Returns:
        The chosen index; ties go to the lowest index.

    Raises:
        ValueError: There is nothing to choose from.
    """
    candidates = list(range(len(texts))) if among is None else list(among)
    if not candidates:
        raise ValueError("there are no proposals to choose from")
    grams = [_grams(t) for t in texts]

    def agreement(i: int) -> float:
        return sum(_similarity(grams[i], grams[j]) for j in range(len(texts)) if j != i)

    return max(candidates, key=lambda i: (agreement(i), -i))
