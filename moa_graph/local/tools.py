"""Tool calls for the local models: tools in the prompt, calls out of the reply.

The embedded llama.cpp server renders prompts with its built-in chat templates, not
the GGUF's Jinja template (every local figure in the docs was measured so), and so it
ignores a request's ``tools``. This module does what the model's own template does
with them: the tools go into the system prompt in Qwen2.5's words (the ``# Tools``
block of its template; SmolLM2's template has none and gets the same), earlier calls
and results are written as ``<tool_call>`` and ``<tool_response>`` blocks, and a reply
made of calls of the bound tools becomes tool calls (:class:`~moa_graph.calls.tool_calls.ToolSet`).
Measured: the 1.5B writes its calls as fenced JSON rather than in the tags, which
reads the same.

A ``tool_choice`` of ``"required"`` or a named tool constrains the reply with
llama.cpp's JSON-schema grammar (the request's ``json_schema`` field), so that it can
only be one valid call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from moa_graph.calls.tool_calls import ToolSet

TOOLS_BLOCK = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
    "{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)
"""The tools part of the system prompt as Qwen2.5's template writes it; ``{tools}`` is
filled in, one JSON schema a line. The GGUF's template doubles the braces around the
example call, and the 1.5B then copied them into its calls (``{{"name": ...}}``, measured),
so the example is written with single braces here."""

_CALL_STARTS = "{[`<"  # how a reply made of calls can start


@dataclass(frozen=True)
class ToolRequest:
    """One request's tools: how the prompt is written and the reply read.

    Attributes:
        tools: The bound tools as OpenAI schemas.
        callable: Those the reply may call (None: ``tool_choice`` is ``"none"``).
        grammar: The JSON schema the reply must follow, when a call is required.
    """

    tools: tuple[dict[str, Any], ...]
    callable: ToolSet | None
    grammar: dict[str, Any] | None

    @classmethod
    def pop(cls, kwargs: dict[str, Any]) -> ToolRequest | None:
        """Take the tool options out of a call's ``kwargs``; None when it binds no tools."""
        tools = kwargs.pop("tools", None)
        choice = kwargs.pop("tool_choice", None)
        parallel = kwargs.pop("parallel_tool_calls", None)
        if not tools:
            return None
        callable_ = ToolSet.of(tools, choice, parallel)
        required = callable_ is not None and callable_.required
        grammar = call_schema(callable_.schemas) if callable_ and required else None
        return cls(tuple(tools), callable_, grammar)

    def prompt(self, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        """Return the conversation as the model reads it: tools in its system prompt."""
        written = as_text(messages)
        if self.callable is None:
            return written
        offered = [t for t in self.tools if _name(t) in self.callable.schemas]
        block = TOOLS_BLOCK.format(
            tools="".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in offered)
        )
        if written and isinstance(written[0], SystemMessage):
            return [SystemMessage(f"{written[0].text}\n\n{block}"), *written[1:]]
        return [SystemMessage(block), *written]

    def request(self, kwargs: dict[str, Any], extra_body: Mapping[str, Any] | None) -> None:
        """Add the grammar of a required call to a call's ``kwargs`` (its ``extra_body``)."""
        if self.grammar is not None:
            body = {**(extra_body or {}), **(kwargs.get("extra_body") or {})}
            kwargs["extra_body"] = {**body, "json_schema": self.grammar}

    def result(self, result: ChatResult) -> ChatResult:
        """Return a whole reply with its calls read."""
        generation = result.generations[0]
        message = generation.message
        calls = self._calls(message.text)
        if calls is None or not isinstance(message, AIMessage):
            return result
        called = AIMessage(content="", tool_calls=calls, **_called(message))
        done = ChatGeneration(message=called, generation_info=generation.generation_info)
        return ChatResult(generations=[done], llm_output=result.llm_output)

    def _calls(self, text: str) -> list[Any] | None:
        return None if self.callable is None else self.callable.parse(text)

    def stream(self) -> Reading:
        """Return what reads a streamed reply chunk by chunk."""
        return Reading(self)


class Reading:
    """Reads a streamed reply: text streams on, what may be calls is held to the end.

    While the reply may still be calls (it starts like JSON, a fence or a tag), its
    chunks are held and an empty token stands for each, so that token timers see the
    reply progress and no call leaks out as text. Once it is text, the held chunks
    and every later one pass through.
    """

    def __init__(self, request: ToolRequest) -> None:
        self._request = request
        self._held: list[ChatGenerationChunk] = []
        self._text = request.callable is None  # nothing to call: every reply is text
        self._start: str | None = None  # the reply's first character after spaces

    def take(self, chunk: ChatGenerationChunk) -> Iterable[tuple[ChatGenerationChunk, str]]:
        """Return the chunks to pass on for ``chunk``, each with the token to report."""
        if self._text:
            return [(chunk, chunk.text)]
        self._held.append(chunk)
        if self._start is None and (stripped := chunk.text.lstrip()):
            self._start = stripped[0]
        if self._start is not None and self._start not in _CALL_STARTS:
            self._text = True
            held, self._held = self._held, []
            return [(c, c.text) for c in held]
        return [(ChatGenerationChunk(message=AIMessageChunk(content="")), "")]

    def end(self) -> Iterable[tuple[ChatGenerationChunk, str]]:
        """Return the chunks to pass on at the end of the stream."""
        if not self._held:
            return []
        merged = self._held[0]
        for chunk in self._held[1:]:
            merged = merged + chunk
        message = merged.message
        assert isinstance(message, AIMessageChunk)
        calls = self._request._calls(message.text)
        if calls is None:
            return [(merged, merged.text)]
        chunks = [
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
            for i, c in enumerate(calls)
        ]
        called = AIMessageChunk(content="", tool_call_chunks=chunks, **_called(message))
        return [(ChatGenerationChunk(message=called, generation_info=merged.generation_info), "")]


def call_schema(schemas: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Return the JSON schema of one call of any of the tools (for llama.cpp's grammar)."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": name},
                "arguments": parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name, parameters in schemas.items()
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def as_text(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Return a conversation with tool calls and results in the template's tags.

    An assistant's calls become ``<tool_call>`` blocks after its text; a run of tool
    results becomes one user message of ``<tool_response>`` blocks.
    """
    written: list[BaseMessage] = []
    results: list[str] = []
    for message in messages:
        if isinstance(message, ToolMessage):
            results.append(f"<tool_response>\n{message.text}\n</tool_response>")
            continue
        if results:
            written.append(HumanMessage("\n".join(results)))
            results = []
        if isinstance(message, AIMessage) and message.tool_calls:
            calls = [
                "<tool_call>\n"
                + json.dumps({"name": c["name"], "arguments": c["args"]}, ensure_ascii=False)
                + "\n</tool_call>"
                for c in message.tool_calls
            ]
            written.append(AIMessage("\n".join([message.text, *calls]).strip()))
        else:
            written.append(message)
    if results:
        written.append(HumanMessage("\n".join(results)))
    return written


def _name(tool: Mapping[str, Any]) -> str:
    return str(tool.get("function", tool)["name"])


def _called(message: AIMessage) -> dict[str, Any]:
    """Return what a reply read as calls keeps of the model's message (id, usage, metadata)."""
    return {
        "id": message.id,
        "usage_metadata": message.usage_metadata,
        "response_metadata": {**message.response_metadata, "finish_reason": "tool_calls"},
    }
