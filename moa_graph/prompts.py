"""Prompts, and how references are put in front of an agent.

The aggregate-and-synthesize prompt is the one of the Mixture-of-Agents paper
(Wang et al., 2024, table 1) as the reference implementation sends it.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, SystemMessage

AGGREGATE_PROMPT = (
    "You have been provided with a set of responses from various open-source models "
    "to the latest user query. Your task is to synthesize these responses into a "
    "single, high-quality response. It is crucial to critically evaluate the "
    "information provided in these responses, recognizing that some of it may be "
    "biased or incorrect. Your response should not simply replicate the given "
    "answers but should offer a refined, accurate, and comprehensive reply to the "
    "instruction. Ensure your response is well-structured, coherent, and adheres to "
    "the highest standards of accuracy and reliability.\n\n"
    "Responses from models:"
)
"""The paper's aggregate-and-synthesize prompt."""


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
