"""The OpenAI chat completions wire format, as ``moa serve`` speaks it.

Requests are validated into :class:`ChatCompletionRequest`; answers, stream chunks
and errors are built as plain JSON-ready dicts in the shapes the OpenAI API uses, so
any OpenAI client reads them. The one extension, the ``moa`` field, appears only
when the request asks for it (``"moa": {"include_proposals": true}``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AnyMessage
from langchain_core.messages.ai import UsageMetadata
from pydantic import BaseModel, ConfigDict, Field, model_validator

from moa_graph.errors import InputError
from moa_graph.graph.plan import RunOptions
from moa_graph.graph.state import AgentFinished, Proposal
from moa_graph.server.wire_tools import ResponseFormat, ToolChoice, ToolSpec, binding, to_messages

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have; OpenAI's own
bodies (content parts, JSON schemas) stay well below it."""

_SURROGATE = re.compile("[\ud800-\udfff]")


class BodyError(ValueError):
    """A request body that is valid JSON but cannot be served.

    Attributes:
        param: The top-level field at fault, if one is.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def check_body(data: dict[str, Any] | list[Any], max_depth: int = MAX_JSON_DEPTH) -> None:
    """Check a parsed request body before it is validated.

    Validation and every later step recurse into the body, so a body nested too
    deeply is refused here; text must be valid Unicode, since it is sent on as
    UTF-8, and JSON's escapes can spell lone surrogates.

    Raises:
        BodyError: The body is nested deeper than ``max_depth``, or a string in it
            (a key or a value) holds a lone surrogate; ``param`` names the
            top-level field it is in.
    """
    stack: list[tuple[dict[str, Any] | list[Any], str | None, int]] = [(data, None, 1)]
    while stack:
        value, param, depth = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, param or key)
                _check_item(item, param or key, depth, max_depth, stack)
        else:
            for item in value:
                _check_item(item, param, depth, max_depth, stack)


def _check_item(
    item: Any,
    param: str | None,
    depth: int,
    max_depth: int,
    stack: list[tuple[dict[str, Any] | list[Any], str | None, int]],
) -> None:
    if isinstance(item, str):
        _check_text(item, param)
    elif isinstance(item, dict | list):
        if depth >= max_depth:
            raise BodyError(f"the request body is nested more than {max_depth} levels deep", param)
        if item:
            stack.append((item, param, depth + 1))


def _check_text(text: str, param: str | None) -> None:
    if match := _SURROGATE.search(text):
        where = f"'{param}'" if param else "the request body"
        raise BodyError(
            f"{where} holds text that is not valid Unicode: a lone surrogate "
            f"(U+{ord(match.group()):04X})",
            param,
        )


class StreamOptions(BaseModel):
    """The request's ``stream_options``."""

    include_usage: bool = False


class MoAOptions(BaseModel):
    """The request's ``moa`` extension field.

    Attributes:
        include_proposals: Return every proposal and each agent's usage in the
            response's ``moa`` field (in the last chunk when streaming).
        sampling: Which agents take the request's ``temperature`` and ``max_tokens``
            as their defaults: the aggregator only (the default) or every agent.
    """

    model_config = ConfigDict(extra="forbid")

    include_proposals: bool = False
    sampling: Literal["aggregator", "all"] = "aggregator"


class ChatCompletionRequest(BaseModel):
    """A ``POST /v1/chat/completions`` body.

    Fields of the OpenAI API that do not change a MoA's answer (``user``,
    ``metadata`` ...) are accepted and ignored; the older ``functions`` and ``n > 1``
    are refused. ``tools``, ``tool_choice``, ``parallel_tool_calls`` and
    ``response_format`` bind the aggregator (see :mod:`moa_graph.server.wire_tools`).
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    moa: MoAOptions = Field(default_factory=MoAOptions)

    @model_validator(mode="after")
    def _check_tools(self) -> ChatCompletionRequest:
        for field in ("functions", "function_call"):
            if (self.model_extra or {}).get(field):
                raise ValueError(f"'{field}' is not supported: use 'tools' and 'tool_choice'")
        self.binding()
        return self

    def binding(self) -> dict[str, Any]:
        """Return the run options that bind the aggregator to the tools and answer format.

        Raises:
            ValueError: ``tool_choice`` without ``tools`` or naming none of them.
        """
        return binding(self.tools, self.tool_choice, self.parallel_tool_calls, self.response_format)

    def run_options(self) -> RunOptions:
        """Return the options of the run the request asks for.

        Its ``temperature`` and ``max_tokens`` are the defaults of the agents in
        ``moa.sampling``'s scope; its tools and answer format bind the aggregator.
        """
        return RunOptions(
            temperature=self.temperature,
            max_tokens=self.completion_budget,
            sampling=self.moa.sampling,
            **self.binding(),
        )

    @property
    def completion_budget(self) -> int | None:
        """``max_completion_tokens``, or the older ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage

    def conversation(self) -> list[AnyMessage]:
        """Return the messages as LangChain messages.

        Raises:
            InputError: A message has an unknown role or no content field, a tool
                call or result is malformed, or a result answers no tool call.
        """
        try:
            return to_messages(self.messages)
        except InputError:
            raise
        except (ValueError, KeyError, TypeError, NotImplementedError) as error:
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(f"messages: {detail}") from None


def usage_json(usage: UsageMetadata | Mapping[str, Any]) -> dict[str, int]:
    """Return LangChain usage as an OpenAI ``usage`` object."""
    prompt = int(usage.get("input_tokens", 0))
    completion = int(usage.get("output_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_json(
    *,
    completion_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    tool_calls: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Return a ``chat.completion`` object without its usage.

    An answer that only calls tools has ``null`` content, as the OpenAI API sends it.
    """
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
    }


@dataclass(frozen=True)
class ChunkMaker:
    """Builds the ``chat.completion.chunk`` objects of one streamed answer.

    Attributes:
        completion_id: The id every chunk of the answer shares.
        created: Unix time of the answer.
        model: The served model's name.
        with_usage_field: ``include_usage`` was requested: every chunk carries
            ``"usage": null`` except the last, as the OpenAI API sends them.
    """

    completion_id: str
    created: int
    model: str
    with_usage_field: bool = False

    def chunk(
        self, delta: dict[str, Any] | None, finish_reason: str | None = None
    ) -> dict[str, Any]:
        """Return one chunk; ``delta=None`` makes the closing chunk without choices."""
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.with_usage_field:
            chunk["usage"] = None
        return chunk


def moa_extension(
    proposals: Sequence[Proposal], aggregator: AgentFinished | None, thread_id: str | None
) -> dict[str, Any]:
    """Return the ``moa`` extension field: proposals and each agent's usage.

    Args:
        proposals: The run's proposals.
        aggregator: The aggregator's ``agent_finished`` progress event.
        thread_id: The run's thread id when the server checkpoints.
    """
    extension: dict[str, Any] = {
        "proposals": [
            {
                "layer": p.layer,
                "agent": p.agent,
                "model": p.model,
                "content": p.content,
                "latency_s": round(p.latency_s, 4),
                "usage": usage_json(p.usage),
                "error": p.error,
            }
            for p in proposals
        ],
        "aggregator": None,
    }
    if aggregator is not None:
        extension["aggregator"] = {
            "agent": aggregator["moa_agent"],
            "model": aggregator["moa_model"],
            "latency_s": round(float(aggregator["latency_s"]), 4),
            "usage": usage_json(aggregator),
        }
    if thread_id is not None:
        extension["thread_id"] = thread_id
    return extension


def error_json(
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Return an OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {
        "error": {"message": message, "type": error_type, "param": param, "code": code, **extra}
    }
