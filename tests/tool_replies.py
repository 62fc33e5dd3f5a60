"""How the loopback fake OpenAI server answers requests with tools or a response format.

As real providers do: a request with ``tools`` (and ``tool_choice`` not ``"none"``)
whose last message is not a tool result is answered with tool calls, and one whose
last message is a tool result with text (the server's ``reply``, which quotes it).
Which tools: the one ``tool_choice`` names; else every tool named in the last
message (only the first of them when ``parallel_tool_calls`` is false); else the
first tool. The arguments are those of the server's ``arguments`` rule when a test
sets one, else built from the tool's schema (:func:`sample`).

A ``response_format`` of ``json_schema`` is answered with an object built from its
schema; ``json_object`` with ``{"model": ..., "answer": <the reply>}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

Arguments = Callable[[str, dict[str, Any]], dict[str, Any]]
"""A test's rule for a tool call's arguments: from the tool's name and the request."""

FRAGMENT = 5
"""Characters of arguments per streamed delta (OpenAI sends a token or so each)."""

_SAMPLES: dict[str, Any] = {"integer": 3, "number": 2.5, "boolean": True, "null": None}


def sample(schema: dict[str, Any], name: str = "value") -> Any:
    """Return a value that fits a JSON schema: an object has its required properties
    (all of them when none are listed), each a sample of its type."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        keys = schema.get("required", list(properties))
        return {key: sample(properties.get(key, {}), key) for key in keys}
    if kind == "array":
        return [sample(schema.get("items", {}), name)]
    return _SAMPLES.get(kind, f"sample {name}")


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if isinstance(part, dict))


def chosen_tools(request: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the ``function`` of each tool the answer calls; ``[]`` to answer in text."""
    tools = [tool["function"] for tool in request.get("tools") or []]
    choice = request.get("tool_choice", "auto")
    last = request["messages"][-1]
    if not tools or choice == "none" or last["role"] == "tool":
        return []
    if isinstance(choice, dict):
        return [tool for tool in tools if tool["name"] == choice["function"]["name"]]
    named = [tool for tool in tools if tool["name"] in _text(last)] or tools[:1]
    return named if request.get("parallel_tool_calls", True) else named[:1]


def tool_calls(
    request: dict[str, Any], call_id: str, arguments: Arguments | None = None
) -> list[dict[str, Any]]:
    """Return the answer's tool calls in the OpenAI format; ``[]`` to answer in text.

    Args:
        request: The request body.
        call_id: The calls' ids start with it; each ends with its index.
        arguments: The test's rule for the arguments; None builds them from the schema.
    """
    return [
        {
            "id": f"{call_id}_{index}",
            "type": "function",
            "function": {
                "name": tool["name"],
                "arguments": json.dumps(
                    arguments(tool["name"], request)
                    if arguments
                    else sample(tool.get("parameters") or {})
                ),
            },
        }
        for index, tool in enumerate(chosen_tools(request))
    ]


def call_deltas(calls: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Yield the stream deltas of tool calls as OpenAI sends them: a call's index, id
    and name with empty arguments first, then pieces of its arguments."""
    for index, call in enumerate(calls):
        name = call["function"]["name"]
        first = {"index": index, "id": call["id"], "type": "function"}
        delta = {"tool_calls": [{**first, "function": {"name": name, "arguments": ""}}]}
        yield {"role": "assistant", "content": None, **delta} if index == 0 else delta
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), FRAGMENT):
            piece = arguments[start : start + FRAGMENT]
            yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def json_reply(request: dict[str, Any], text: str) -> str:
    """Return ``text``, or the JSON object the request's ``response_format`` asks for."""
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return json.dumps(sample(response_format["json_schema"].get("schema") or {}))
    if response_format.get("type") == "json_object":
        return json.dumps({"model": request["model"], "answer": text})
    return text
