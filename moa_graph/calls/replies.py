"""A model's reply, checked before anything uses it: its tool calls whole, its secrets gone.

Every reply of every agent passes :func:`checked` (in :mod:`moa_graph.calls.call`)
before it becomes a proposal, another agent's reference or the answer.

A tool call is a call only when it is whole and well formed. A reply is refused with
a :class:`ToolCallError` naming the tool when

- it calls a tool and was cut off at its token limit (``finish_reason: "length"``):
  its arguments may stop mid-value (``{"command": "rm -rf /home/user/build``), and
  LangChain's stream parser completes such a fragment into a valid but different
  call. A cut-off call is therefore neither returned as a call nor as text: the
  caller gets the error (``moa serve`` a 502 naming the aggregator and the tool,
  ``ChatMoA`` a :class:`~moa_graph.errors.ModelCallError`), never a completed call;
- a call's arguments are not valid JSON, or are JSON but not an object (an array).

The error is not retried (the same token limit cuts the same call again); the
agent's fallbacks are tried. Secret values (:mod:`moa_graph.calls.secrets`) a model echoes
are redacted from the reply's text, tool calls and extra fields.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk
from pydantic import ValidationError

from moa_graph.calls.secrets import redact_data

_CUT_OFF = {
    "finish_reason": {"length", "MAX_TOKENS"},  # OpenAI-compatible servers, Google
    "stop_reason": {"max_tokens"},  # Anthropic
    "done_reason": {"length"},  # Ollama
}
"""Response metadata that says a reply ended at its token limit, by provider."""

_JSON_KINDS = {
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


class ToolCallError(Exception):
    """A reply's tool call is cut off or malformed: it is not a call, and not retried."""


class ChunkReader(BaseCallbackHandler):
    """A callback handler that reads every message chunk a streamed model call yields.

    Subclasses say what one chunk means in :meth:`on_chunk`.
    """

    run_inline = True

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Hand the chunk's message to :meth:`on_chunk`, when it is a chat message's."""
        message = chunk.message if isinstance(chunk, ChatGenerationChunk) else None
        if isinstance(message, AIMessageChunk):
            self.on_chunk(message, run_id)

    def on_chunk(self, message: AIMessageChunk, run_id: UUID) -> None:
        """Read one chunk of the reply of the model call ``run_id``."""


class StreamedCalls(ChunkReader):
    """Collects the argument text of the tool calls a streamed reply makes, as sent.

    LangChain completes a streamed call's partial arguments (an unclosed string is
    closed); :func:`checked` reads them as the model wrote them here.

    Attributes:
        calls: Per call index, the tool's name and its arguments' text.
    """

    def __init__(self) -> None:
        self.calls: dict[int, tuple[str, str]] = {}

    def on_chunk(self, message: AIMessageChunk, run_id: UUID) -> None:
        """Add the chunk's pieces of tool calls."""
        for piece in message.tool_call_chunks:
            index = piece.get("index")
            if isinstance(index, int):
                name, arguments = self.calls.get(index, ("", ""))
                self.calls[index] = (
                    name or piece.get("name") or "",
                    arguments + (piece.get("args") or ""),
                )


def checked(reply: AIMessage, streamed: StreamedCalls | None = None) -> AIMessage:
    """Return ``reply`` with secrets redacted, once its tool calls are whole and well formed.

    Args:
        reply: The model's reply.
        streamed: The tool calls as streamed, when the reply was.

    Raises:
        ToolCallError: A tool call was cut off at the token limit, or its arguments
            are not a JSON object; the message names the tool.
    """
    names = [c["name"] for c in reply.tool_calls]
    names += [c["name"] or "" for c in reply.invalid_tool_calls]
    if names and (reason := _cut_off(reply)):
        raise ToolCallError(
            f"the call of tool '{names[-1]}' was cut off at the token limit "
            f"({reason}), so it is not a tool call; raise the agent's max_tokens"
        )
    written = list(streamed.calls.values()) if streamed else []
    written += [(c["name"] or "", c["args"] or "") for c in reply.invalid_tool_calls]
    for name, arguments in written:
        if problem := _not_an_object(arguments):
            raise ToolCallError(f"the arguments of tool '{name}' are {problem}")
    return reply.model_copy(
        update={
            "content": redact_data(reply.content),
            "tool_calls": redact_data(reply.tool_calls),
            "invalid_tool_calls": redact_data(reply.invalid_tool_calls),
            "additional_kwargs": redact_data(reply.additional_kwargs),
        }
    )


def explained(error: Exception) -> Exception:
    """Return a client's failure to take a reply's tool call as a :class:`ToolCallError`.

    LangChain's OpenAI client refuses a whole (not streamed) reply whose call
    arguments are JSON but not an object with a ``ValidationError`` of ``AIMessage``;
    any other error is returned as it is.
    """
    if not isinstance(error, ValidationError) or error.title != "AIMessage":
        return error
    for detail in error.errors():
        location = detail["loc"]
        if len(location) == 3 and location[0] == "tool_calls" and location[2] == "args":
            kind = _JSON_KINDS.get(type(detail["input"]), "JSON")
            number = int(location[1]) + 1
            return ToolCallError(
                f"the arguments of tool call {number} are {kind}, not a JSON object"
            )
    return error


def _cut_off(reply: AIMessage) -> str | None:
    """Return the metadata that says the reply hit its token limit, if it does."""
    for key, values in _CUT_OFF.items():
        if (value := reply.response_metadata.get(key)) in values:
            return f"{key} '{value}'"
    return None


def _not_an_object(arguments: str) -> str | None:
    """Return what is wrong with a call's arguments, or None for a JSON object."""
    if not arguments.strip():
        return None  # no arguments: an empty object, as OpenAI sends them
    try:
        value = json.loads(arguments)
    except ValueError:
        return "not valid JSON"
    if isinstance(value, dict):
        return None
    return f"{_JSON_KINDS.get(type(value), 'JSON')}, not a JSON object"
