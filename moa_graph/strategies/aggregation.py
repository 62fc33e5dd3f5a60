r"""Aggregation strategies: how the aggregator turns the last layer's proposals into one answer.

- ``synthesize``: the paper's aggregate-and-synthesize (the aggregator writes a new answer).
- ``rank``: the aggregator is an LLM ranker: it names the best proposal, which is returned
  verbatim (the paper's "LLM ranker" baseline).
- ``vote``: no model call; the answer most proposals reached (their last number, else their
  normalized text) wins, and the first proposal with it is returned.
- ``vote-hint``: synthesize, but first tell the aggregator which answer most proposals reached.
- ``consensus``: no model call; the proposal that agrees most with the others. Stated final
  answers (``The answer is 42``, ``\boxed{}``, a lone letter) are voted on; code is checked
  against the prompt's examples when ``check_code`` is on; other text goes to the proposal
  closest to all the others by word and word-pair overlap.
- ``auto``: per prompt, from the proposals: a vote where they state final answers, the code
  check of ``consensus`` for code, and ``synthesize`` for any other text.

With tools bound, ``vote``, ``consensus`` and ``auto`` vote on the calls the proposals
write (:func:`voted_calls`) where most proposals are calls, and leave any other answer
to the aggregator, bound to the tools; the other strategies let the aggregator decide.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata

from moa_graph.calls import tool_calls
from moa_graph.config.model import Aggregation
from moa_graph.strategies import agreement
from moa_graph.strategies.code_check import examples_passed
from moa_graph.strategies.prompts import build_messages

RANK_PROMPT = (
    "Below are {n} candidate responses to the user's last message. Judge which one is the "
    "most accurate and helpful. Reply with the number of the best response only, e.g. "
    "'Best: 2'.\n\n{candidates}"
)
"""The LLM ranker's instruction; ``{n}`` and ``{candidates}`` are filled in."""

VOTE_HINT = (
    "\n\nNote: {count} of the {n} responses reached the final answer {answer}. A majority is "
    "often, but not always, right; check it before you answer."
)
"""Appended to the aggregate prompt by ``vote-hint`` when proposals agree on an answer."""

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_SPACES = re.compile(r"\s+")


def final_answer(text: str) -> str:
    """Return what a response answers, for voting: its last number, else its normalized text.

    Args:
        text: A proposal.

    Returns:
        The last number with thousands separators and trailing zeros removed
        (``"1,000.50"`` -> ``"1000.5"``), or the lowercased text with runs of spaces
        collapsed when it holds no number.
    """
    numbers = _NUMBER.findall(text)
    if not numbers:
        return _SPACES.sub(" ", text).strip().lower()
    number = numbers[-1].replace(",", "")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return "0" if number in ("-0", "") else number


def majority(texts: Sequence[str]) -> tuple[str, int, int]:
    """Return the most common final answer, how many reached it, and the first one's index.

    Ties go to the answer reached first, so the result does not depend on hashing.

    Raises:
        ValueError: ``texts`` is empty.
    """
    if not texts:
        raise ValueError("there are no proposals to vote on")
    answers = [final_answer(t) for t in texts]
    counts = Counter(answers)
    best = max(answers, key=lambda a: (counts[a], -answers.index(a)))
    return best, counts[best], answers.index(best)


def vote_hint(references: Sequence[str]) -> str:
    """Return the note ``vote-hint`` adds to the aggregate prompt, or ``""`` without a majority."""
    if len(references) < 2:
        return ""
    answer, count, _ = majority(references)
    if count < 2:
        return ""
    return VOTE_HINT.format(count=count, n=len(references), answer=answer)


def rank_messages(
    conversation: Sequence[BaseMessage], references: Sequence[str]
) -> list[BaseMessage]:
    """Return the messages the LLM ranker receives: the conversation and the candidates."""
    candidates = "\n\n".join(f"[Response {i}]\n{text}" for i, text in enumerate(references, 1))
    instruction = RANK_PROMPT.format(n=len(references), candidates=candidates)
    return [*conversation, HumanMessage(instruction)]


def parse_rank(reply: str, count: int) -> int:
    """Return the 0-based index of the proposal the ranker named; the first when unclear.

    Args:
        reply: The ranker's reply, e.g. ``"Best: 2"``.
        count: How many candidates there were.
    """
    for number in re.findall(r"\d+", reply):
        if 1 <= int(number) <= count:
            return int(number) - 1
    return 0


def chosen(reply: AIMessage, references: Sequence[str]) -> AIMessage:
    """Return the proposal the ranker's ``reply`` picks, keeping the ranker's usage."""
    index = parse_rank(reply.text, len(references))
    return AIMessage(
        references[index],
        usage_metadata=reply.usage_metadata,
        response_metadata={"moa_chosen": index, "moa_strategy": "rank"},
    )


def voted(references: Sequence[str]) -> AIMessage:
    """Return the first proposal with the majority answer; no model is called."""
    _, count, index = majority(references)
    return _picked(references, index, "vote", moa_votes=count)


def voted_calls(references: Sequence[str], tools: tool_calls.ToolSet | None) -> AIMessage | None:
    """Return the tool calls most proposals make, or None when most make none.

    Calls are equal when they name the same tool with equal arguments after parsing;
    several calls of one proposal compare as a multiset; a tie goes to the first
    proposal. No model is called.
    """
    found = None if tools is None else tool_calls.vote(references, tools)
    if found is None:
        return None
    usage = UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)
    metadata = {
        "moa_chosen": found.chosen,
        "moa_strategy": "vote",
        "moa_votes": found.votes,
        "moa_callers": found.callers,
        "finish_reason": "tool_calls",
    }
    return AIMessage(
        content="", tool_calls=found.calls, usage_metadata=usage, response_metadata=metadata
    )


def _picked(references: Sequence[str], index: int, how: str, **metadata: Any) -> AIMessage:
    """Return proposal ``index`` as the answer; no model was called."""
    usage = UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)
    return AIMessage(
        references[index],
        usage_metadata=usage,
        response_metadata={"moa_chosen": index, "moa_strategy": how, **metadata},
    )


def _by_answer(references: Sequence[str]) -> AIMessage:
    _, count, index = agreement.answer_majority(references)
    return _picked(references, index, "vote", moa_votes=count)


def _by_code(prompt: str, references: Sequence[str], *, check_code: bool) -> AIMessage:
    """Pick the code that passes most of the prompt's examples, then the most agreed."""
    passed = examples_passed(prompt, references) if check_code else None
    if passed is None:
        return _picked(references, agreement.most_agreed(references), "similarity")
    best = [i for i, count in enumerate(passed) if count == max(passed)]
    index = agreement.most_agreed(references, among=best)
    return _picked(references, index, "examples", moa_examples_passed=passed)


def consensus(prompt: str, references: Sequence[str], *, check_code: bool = False) -> AIMessage:
    """Return the proposal that agrees most with the others; no model is called.

    Args:
        prompt: The user's last message (its examples check code).
        references: The proposals, in agent order.
        check_code: Run code proposals against the prompt's doctest examples.
    """
    kind = agreement.kind_of(references)
    if kind == "answer":
        return _by_answer(references)
    if kind == "code":
        return _by_code(prompt, references, check_code=check_code)
    return _picked(references, agreement.most_agreed(references), "similarity")


def select(
    strategy: Aggregation, prompt: str, references: Sequence[str], *, check_code: bool = False
) -> AIMessage | None:
    """Return the answer of a strategy that needs no model call here, else None.

    ``auto`` votes on stated answers, checks code like ``consensus``, and returns None
    for other text, which the aggregator then synthesizes.

    Raises:
        ValueError: There are no proposals.
    """
    return STRATEGIES[strategy].select(prompt, references, check_code)


def _no_selection(prompt: str, references: Sequence[str], check_code: bool) -> None:
    return None


def _proposals(references: Sequence[str]) -> Sequence[str]:
    if not references:
        raise ValueError("there are no proposals to choose from")
    return references


def _vote(prompt: str, references: Sequence[str], check_code: bool) -> AIMessage:
    return voted(_proposals(references))


def _consensus(prompt: str, references: Sequence[str], check_code: bool) -> AIMessage:
    return consensus(prompt, _proposals(references), check_code=check_code)


def _auto(prompt: str, references: Sequence[str], check_code: bool) -> AIMessage | None:
    if references and agreement.kind_of(references) == "text":
        return None
    return _consensus(prompt, references, check_code)


def _synthesis_messages(
    conversation: Sequence[BaseMessage],
    references: Sequence[str],
    system_prompt: str | None,
    aggregate_prompt: str,
) -> list[BaseMessage]:
    return build_messages(
        conversation,
        system_prompt=system_prompt,
        references=references,
        aggregate_prompt=aggregate_prompt,
    )


def _hinted_messages(
    conversation: Sequence[BaseMessage],
    references: Sequence[str],
    system_prompt: str | None,
    aggregate_prompt: str,
) -> list[BaseMessage]:
    hinted = aggregate_prompt + vote_hint(references)
    return _synthesis_messages(conversation, references, system_prompt, hinted)


def _ranker_messages(
    conversation: Sequence[BaseMessage],
    references: Sequence[str],
    system_prompt: str | None,
    aggregate_prompt: str,
) -> list[BaseMessage]:
    return rank_messages(conversation, references)


def _as_is(reply: AIMessage, references: Sequence[str]) -> AIMessage:
    return reply


@dataclass(frozen=True)
class Strategy:
    """How an aggregator turns references into its answer.

    Attributes:
        select: The answer when no model call is needed (prompt, references,
            check_code), else None.
        messages: The prompt of the model call (conversation, references, the agent's
            system prompt, the aggregate prompt); proposers of later layers use
            ``synthesize``'s.
        finish: The answer made of the model's reply and the references.
    """

    select: Callable[[str, Sequence[str], bool], AIMessage | None]
    messages: Callable[
        [Sequence[BaseMessage], Sequence[str], str | None, str], list[BaseMessage]
    ] = _synthesis_messages
    finish: Callable[[AIMessage, Sequence[str]], AIMessage] = _as_is

    @property
    def reply_is_answer(self) -> bool:
        """Whether the model's reply is the answer as it comes (a ranker's names one)."""
        return self.finish is _as_is


STRATEGIES: dict[str, Strategy] = {
    "synthesize": Strategy(_no_selection),
    "rank": Strategy(_no_selection, _ranker_messages, chosen),
    "vote": Strategy(_vote),
    "vote-hint": Strategy(_no_selection, _hinted_messages),
    "consensus": Strategy(_consensus),
    "auto": Strategy(_auto),
}
"""Every aggregation strategy by name."""
