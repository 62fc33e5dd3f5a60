"""Prompt budgets: references cut so that a prompt fits an agent's context window."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import count_tokens_approximately

from moa_graph.config.agents import AgentSpec
from moa_graph.errors import ContextOverflowError

_CHARS_PER_TOKEN = 4.0  # what count_tokens_approximately assumes


def count_tokens(messages: Sequence[BaseMessage]) -> int:
    """Estimate the tokens of a prompt (about four characters per token)."""
    return count_tokens_approximately(messages)


def fit_references(
    build: Callable[[list[str]], list[BaseMessage]],
    references: Sequence[str],
    budget: int | None,
    *,
    agent: str,
) -> tuple[list[BaseMessage], int]:
    """Build a prompt whose references are cut to fit ``budget`` tokens.

    Every reference gets an equal share of what the conversation leaves; shorter
    ones give their unused share to the others. The end of a reference is cut.

    Args:
        build: Builds the prompt from a list of references.
        references: The full references.
        budget: Prompt tokens allowed, or None for no limit.
        agent: The agent's name, for the error.

    Returns:
        The prompt and the estimated number of tokens cut from the references.

    Raises:
        ContextOverflowError: The prompt does not fit even without references.
    """
    messages = build(list(references))
    if budget is None or count_tokens(messages) <= budget:
        return messages, 0
    base = count_tokens(build([""] * len(references)) if references else messages)
    if base > budget or not references:
        raise ContextOverflowError(
            f"the prompt (~{base} tokens) does not fit agent '{agent}', "
            f"which takes {budget} prompt tokens"
        )
    low, high = 0, max(len(r) for r in references)
    while low < high:  # the largest per-reference character cap that fits
        middle = (low + high + 1) // 2
        if count_tokens(build([r[:middle] for r in references])) <= budget:
            low = middle
        else:
            high = middle - 1
    cut = [r[:low] for r in references]
    removed = sum(len(r) - len(c) for r, c in zip(references, cut, strict=True))
    return build(cut), round(removed / _CHARS_PER_TOKEN)


def prompt_budget(spec: AgentSpec, model: BaseChatModel, max_tokens: int) -> int | None:
    """Return the prompt tokens an agent takes, or None when its window is unknown.

    The agent's ``context_window`` (prompt and completion) wins; otherwise the
    model's profile (``max_input_tokens``) is used when LangChain knows it.
    """
    if spec.context_window:
        return spec.context_window - max_tokens
    profile = getattr(model, "profile", None) or {}
    window = profile.get("max_input_tokens")
    return window if isinstance(window, int) else None
