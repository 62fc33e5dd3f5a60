"""Tools in a mixture: what proposers are told, and a conversation every agent can take.

Only the aggregator is bound to the tools and may call them. Proposers see the
tools' descriptions in their system prompt and propose what to do, a call as the
JSON object :mod:`moa_graph.calls.tool_calls` reads (so equal proposed calls can be
voted on); earlier tool calls and their results reach them as plain text, which every
chat model takes
(a model without tool support would refuse ``tool`` messages).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage

from moa_graph.calls.tool_calls import calls_key

TOOLS_PROMPT = (
    "The assistant that gives the final answer can call these tools:\n{tools}\n\n"
    "Say what it should do next: answer directly, or call tools. If a tool is needed, your "
    'whole reply is the tool call JSON, {{"name": <tool name>, "arguments": <arguments as a '
    "JSON object>}}, one object per call, with no other text."
)
"""Put in every proposer's system prompt when tools are bound; ``{tools}`` is filled in."""


AGGREGATOR_TOOLS_NOTE = (
    "\n\nIf a tool is needed, your whole reply is the tool call JSON, with no other text. "
    "Once the tool results in the conversation answer the query, answer in text."
)
"""Put after the aggregator's references when it is bound to tools. Without its first
sentence the local 1.5B aggregator wrote its call inside prose under the synthesis
prompt; without its second it called the calculator again after the calculator's result."""


def describe_tools(tools: Sequence[dict[str, Any]]) -> str:
    """Return the proposers' note on the tools (OpenAI tool schemas)."""
    lines = []
    for tool in tools:
        function = tool.get("function", tool)
        parameters = json.dumps(function.get("parameters", {}), sort_keys=True)
        description = function.get("description", "")
        lines.append(f"- {function['name']}: {description} Arguments (JSON schema): {parameters}")
    return TOOLS_PROMPT.format(tools="\n".join(lines))


def repeats_last_calls(messages: Sequence[BaseMessage], calls: Sequence[ToolCall]) -> bool:
    """Whether ``calls`` are the calls whose results end the conversation, made again.

    Equal as :func:`moa_graph.calls.tool_calls.calls_key` compares them; False when the
    conversation does not end with tool results.
    """
    position = len(messages)
    while position and isinstance(messages[position - 1], ToolMessage):
        position -= 1
    if position in (0, len(messages)) or not calls:
        return False
    before = messages[position - 1]
    if not isinstance(before, AIMessage) or not before.tool_calls:
        return False
    return calls_key(before.tool_calls) == calls_key(calls)


def as_text(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Return the conversation with tool calls and tool results written as plain text."""
    converted: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            calls = "; ".join(
                f"{call['name']}({json.dumps(call['args'], sort_keys=True)})"
                for call in message.tool_calls
            )
            text = f"{message.text}\n" if message.text else ""
            converted.append(AIMessage(f"{text}Called the tool: {calls}"))
        elif isinstance(message, ToolMessage):
            name = message.name or "the tool"
            converted.append(HumanMessage(f"Result of {name}: {message.text}"))
        else:
            converted.append(message)
    return converted
