"""How references are put in front of an agent."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, SystemMessage

from moa_graph.config.aggregate_prompt import AGGREGATE_PROMPT


def format_references(prompt: str, references: Sequence[str]) -> str:
    """Return ``prompt`` followed by the numbered references.

    Args:
        prompt: The aggregate prompt.
        references: The previous layer's responses, in agent order.

    Returns:
        The text of the system message that carries the references.
    """
    return prompt + "".join(f"\n{i}. {text}" for i, text in enumerate(references, 1))


def build_messages(
    conversation: Sequence[BaseMessage],
    *,
    system_prompt: str | None = None,
    references: Sequence[str] = (),
    aggregate_prompt: str = AGGREGATE_PROMPT,
) -> list[BaseMessage]:
    """Build the messages one agent receives.

    The agent's own system prompt comes first; references, when there are any, are
    appended to the conversation's system message, or become one, as the reference
    implementation does.

    Args:
        conversation: The whole conversation, oldest message first.
        system_prompt: The agent's own system prompt, if it has one.
        references: The previous layer's responses for the latest user turn.
        aggregate_prompt: The text put before the references.

    Returns:
        A new list; ``conversation`` is not modified.
    """
    messages = list(conversation)
    system_parts = [system_prompt] if system_prompt else []
    if messages and isinstance(messages[0], SystemMessage):
        system_parts.append(messages.pop(0).text)
    if references:
        system_parts.append(format_references(aggregate_prompt, references))
    if system_parts:
        messages.insert(0, SystemMessage("\n\n".join(system_parts)))
    return messages
