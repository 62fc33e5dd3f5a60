"""Tools and answer formats in the OpenAI wire format, as ``moa serve`` speaks them.

A request's ``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format``
are validated here and handed to the run as the fields of
:class:`~moa_graph.graph.plan.RunOptions` of the same names; the aggregator is bound to
them. A conversation's assistant tool calls and tool results become LangChain
messages, and an answer's tool calls go out as OpenAI ``tool_calls``, whole or as
the deltas of a stream.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, Literal, TypeVar

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage, convert_to_messages
from langchain_core.messages.tool import tool_call
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moa_graph.config.model import describe_validation_error
from moa_graph.errors import InputError

ARGUMENTS_FRAGMENT = 32
"""Characters of a tool call's arguments per streamed delta."""

_NAME = r"^[A-Za-z0-9_-]{1,64}$"
_M = TypeVar("_M", bound=BaseModel)


class FunctionSpec(BaseModel):
    """A tool's ``function``: its name, description and JSON schema of arguments."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(BaseModel):
    """One of the request's ``tools``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionSpec


class _FunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    """A ``tool_choice`` that names the tool to call."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: _FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ResponseFormat(BaseModel):
    """The request's ``response_format``: text, any JSON object, or one of a schema."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("'json_schema' is given with, and only with, type 'json_schema'")
        if self.json_schema is not None and not isinstance(self.json_schema.get("name"), str):
            raise ValueError("'json_schema' needs a 'name'")
        return self


def binding(
    tools: list[ToolSpec] | None,
    tool_choice: ToolChoice | None,
    parallel_tool_calls: bool | None,
    response_format: ResponseFormat | None,
) -> dict[str, Any]:
    """Return the run options that bind the aggregator, as JSON data (None: not set).

    Raises:
        ValueError: ``tool_choice`` without ``tools``, or naming a tool not among them.
    """
    names = [tool.function.name for tool in tools or ()]
    if tool_choice is not None and not names:
        raise ValueError("'tool_choice' is only allowed when 'tools' are given")
    if isinstance(tool_choice, NamedToolChoice) and tool_choice.function.name not in names:
        raise ValueError(f"'tool_choice' names '{tool_choice.function.name}', not one of 'tools'")
    choice = tool_choice.model_dump() if isinstance(tool_choice, BaseModel) else tool_choice
    as_json = response_format is not None and response_format.type != "text"
    return {
        "tools": tuple(t.model_dump(exclude_unset=True) for t in tools or ()),
        "tool_choice": choice if names else None,
        "parallel_tool_calls": parallel_tool_calls if names else None,
        "response_format": response_format.model_dump(exclude_none=True)
        if as_json and response_format is not None
        else None,
    }


class _Function(BaseModel):
    name: str
    arguments: str


class _ToolCall(BaseModel):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: _Function


class _AssistantCalls(BaseModel):
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[_ToolCall] = Field(min_length=1)


class _ToolResult(BaseModel):
    tool_call_id: str
    content: str | list[str | dict[str, Any]]


def to_messages(messages: list[dict[str, Any]]) -> list[AnyMessage]:
    """Return OpenAI chat messages as LangChain messages, tool calls and results included.

    Raises:
        InputError: A tool call or tool message is malformed, or a tool message
            answers no earlier tool call (names the message by its index).
        ValueError, KeyError, TypeError, NotImplementedError: Another message is
            one LangChain cannot convert.
    """
    called: dict[str, str] = {}  # tool call id -> the tool's name
    converted: list[AnyMessage] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            converted.append(_assistant(index, _parsed(_AssistantCalls, index, message), called))
        elif role == "tool":
            result = _parsed(_ToolResult, index, message)
            if result.tool_call_id not in called:
                raise InputError(
                    f"messages.{index}: a tool message answers no earlier tool call "
                    f"(no call has the id '{result.tool_call_id}')"
                )
            converted.append(
                ToolMessage(
                    result.content,
                    tool_call_id=result.tool_call_id,
                    name=called[result.tool_call_id],
                )
            )
        else:
            converted.extend(convert_to_messages([message]))  # type: ignore[arg-type]
    return converted


def _parsed(model: type[_M], index: int, message: dict[str, Any]) -> _M:
    try:
        return model.model_validate(message)
    except ValidationError as error:
        raise InputError(f"messages.{index}.{describe_validation_error(error)}") from None


def _assistant(index: int, message: _AssistantCalls, called: dict[str, str]) -> AIMessage:
    calls = []
    for number, call in enumerate(message.tool_calls):
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise InputError(
                f"messages.{index}.tool_calls.{number}.function.arguments: not a JSON object"
            )
        calls.append(tool_call(name=call.function.name, args=arguments, id=call.id))
        called[call.id] = call.function.name
    return AIMessage(message.content or "", tool_calls=calls)  # type: ignore[arg-type]


def tool_calls_json(message: AIMessage) -> list[dict[str, Any]]:
    """Return an answer's tool calls in the OpenAI format (``[]`` when it made none).

    Calls whose arguments did not parse are returned as the model wrote them, as
    the OpenAI API does; a call without an id gets one.
    """
    calls: list[tuple[str | None, str | None, str | None]] = [
        (call["id"], call["name"], json.dumps(call["args"], ensure_ascii=False))
        for call in message.tool_calls
    ]
    calls += [(call["id"], call["name"], call["args"]) for call in message.invalid_tool_calls]
    return [
        {
            "id": call_id or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": name or "", "arguments": arguments or ""},
        }
        for call_id, name, arguments in calls
    ]


def tool_call_deltas(calls: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Yield the stream deltas of tool calls, as the OpenAI API streams them.

    Each call starts with a delta of its index, id, type, name and empty arguments;
    deltas with pieces of its arguments follow.
    """
    for index, call in enumerate(calls):
        function = call["function"]
        first = {"name": function["name"], "arguments": ""}
        yield {
            "tool_calls": [
                {"index": index, "id": call["id"], "type": "function", "function": first}
            ]
        }
        arguments: str = function["arguments"]
        for start in range(0, len(arguments), ARGUMENTS_FRAGMENT):
            piece = arguments[start : start + ARGUMENTS_FRAGMENT]
            yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
