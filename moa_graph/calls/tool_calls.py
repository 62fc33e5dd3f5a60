"""Tool calls written as text: find them in a reply, check them, and tell equal ones apart.

Models without a tool-call format of their own (the local ones) and proposers, which
answer in text, write a call as JSON: ``{"name": "multiply", "arguments": {"a": 17}}``.
A reply *is* tool calls when it consists of one or more such objects, bare, in a
fenced code block or in ``<tool_call>`` tags (a JSON list of them too), each naming a
tool the caller bound, with arguments valid against that tool's JSON schema. Anything
else is text: prose around a call, a made-up tool name, arguments that do not validate.

A *proposal* is advice to the aggregator, and proposers write their calls inside prose
("I will use the calculator: ```json {...}```"; the local 1.5B did so in all three
proposals asked "What is 17 times 23?"). So the calls a proposal proposes are every call
object in it, wherever it stands (:meth:`ToolSet.proposed`); it proposes none when one of
them is not a valid call of a bound tool.

Reading is linear in the text's size: it is scanned once, left to right, and no
character is decoded as JSON twice.

Two calls are equal when they name the same tool with equal arguments after parsing:
the order of keys and the writing of numbers (``17`` and ``17.0``) do not matter.
Several calls in one reply compare as a multiset.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators
from langchain_core.messages import ToolCall
from langchain_core.messages.tool import tool_call

_SPACE = re.compile(r"\s*")
_STRUCTURE = re.compile(r'[{}"\\]')
_FENCE_OPEN = re.compile(r"```[A-Za-z0-9_-]*")
_OPEN_TAG = "<tool_call>"
_CLOSE_TAG = "</tool_call>"
_FENCE = "```"


_DECODER = json.JSONDecoder()  # NaN and Infinity decode, and make no valid call


class _NotCalls(Exception):
    """The reply is not made of calls only."""


@dataclass(frozen=True)
class ToolSet:
    """The tools a reply may call, each with the validator of its arguments.

    Build it with :meth:`of`.

    Attributes:
        schemas: Each tool's JSON schema of arguments, by name.
        parallel: Whether one reply may call several tools.
        required: Whether the answer must call a tool (``tool_choice`` ``"required"``
            or a named tool).
    """

    schemas: Mapping[str, dict[str, Any]]
    parallel: bool = True
    required: bool = False
    _validators: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        tools: Sequence[Mapping[str, Any]],
        tool_choice: str | Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
    ) -> ToolSet | None:
        """Return the tools that may be called, or None when none may.

        Args:
            tools: OpenAI tool schemas (``{"type": "function", "function": {...}}``)
                or bare function schemas.
            tool_choice: OpenAI's ``tool_choice``: ``"none"`` allows no call, a named
                tool (``{"type": "function", "function": {"name": ...}}`` or a bare
                name) only that one; anything else all of ``tools``.
            parallel_tool_calls: False: a reply may call one tool only.
        """
        schemas: dict[str, dict[str, Any]] = {}
        for tool in tools:
            function = tool.get("function", tool)
            schemas[str(function["name"])] = dict(function.get("parameters") or {})
        named = forced_name(tool_choice)
        if named is not None:
            schemas = {named: schemas[named]} if named in schemas else {}
        if tool_choice == "none" or not schemas:
            return None
        required = named is not None or tool_choice in ("required", "any")
        return cls(schemas, parallel=parallel_tool_calls is not False, required=required)

    def parse(self, text: str) -> list[ToolCall] | None:
        """Return the calls a reply makes, or None when it is text.

        Each call gets a fresh id. Linear in ``len(text)``.
        """
        try:
            values = _json_values(text)
        except _NotCalls:
            return None
        return self._calls(
            item for value in values for item in (value if isinstance(value, list) else [value])
        )

    def proposed(self, text: str) -> list[ToolCall] | None:
        """Return the calls a proposal proposes, prose around them allowed, or None.

        Every JSON object in ``text`` with a ``name`` and ``arguments`` (or
        ``parameters``) is a call; None when there is none, when one is not a valid call
        of a bound tool, or when there are several and parallel calls are off.
        Linear in ``len(text)``.
        """
        return self._calls(
            item
            for item in _objects_in(text)
            if isinstance(item, dict) and "name" in item and {"arguments", "parameters"} & set(item)
        )

    def _calls(self, items: Iterable[Any]) -> list[ToolCall] | None:
        """Return the items as calls: None if one is no valid call, or none or too many."""
        calls: list[ToolCall] = []
        for item in items:
            call = self._call(item)
            if call is None:
                return None
            calls.append(call)
        if not calls or (len(calls) > 1 and not self.parallel):
            return None
        return calls

    def _call(self, item: Any) -> ToolCall | None:
        if not isinstance(item, dict) or not set(item) <= {"name", "arguments", "parameters"}:
            return None
        name = item.get("name")
        arguments = item.get("arguments", item.get("parameters", {}))
        if isinstance(arguments, str):  # OpenAI writes arguments as a JSON string
            try:
                arguments = _DECODER.decode(arguments)
            except (ValueError, RecursionError):
                return None
        if not isinstance(name, str) or name not in self.schemas or not isinstance(arguments, dict):
            return None
        if not _finite(arguments):
            return None
        if not self._valid(name, arguments):
            return None
        return tool_call(name=name, args=arguments, id=f"call_{uuid.uuid4().hex[:24]}")

    def _valid(self, name: str, arguments: dict[str, Any]) -> bool:
        validator = self._validators.get(name)
        if validator is None:
            schema = self.schemas[name]
            cls = validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except schema_errors.SchemaError:
                return False  # arguments cannot be checked against a broken schema
            validator = self._validators[name] = cls(schema)
        try:
            return bool(validator.is_valid(arguments))
        except (schema_errors.SchemaError, schema_errors.UnknownType, RecursionError):
            return False


def forced_name(tool_choice: str | Mapping[str, Any] | None) -> str | None:
    """Return the tool a ``tool_choice`` names, or None when it names none."""
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
        return None
    if isinstance(tool_choice, str) and tool_choice not in ("none", "auto", "required", "any"):
        return tool_choice
    return None


def _json_values(text: str) -> list[Any]:
    """Return the JSON values a reply is made of, bare, fenced or tagged.

    Raises:
        _NotCalls: Something else is in the reply, or it is empty.
    """
    values: list[Any] = []
    position = _skip(text, 0)
    while position < len(text):
        if text.startswith(_OPEN_TAG, position):
            value, position = _decode(text, _skip(text, position + len(_OPEN_TAG)))
            values.append(value)
            position = _expect(text, _skip(text, position), _CLOSE_TAG)
        elif text.startswith(_FENCE, position):
            position = _skip(text, _FENCE_OPEN.match(text, position).end())  # type: ignore[union-attr]
            while not text.startswith(_FENCE, position):
                value, position = _decode(text, position)
                values.append(value)
                position = _skip(text, position)
            position += len(_FENCE)
        else:
            value, position = _decode(text, position)
            values.append(value)
        position = _skip(text, position)
    if not values:
        raise _NotCalls
    return values


def _objects_in(text: str) -> list[Any]:
    """Return the JSON objects standing anywhere in ``text``, outermost only, in order.

    One pass finds the balanced ``{...}`` spans (braces in strings do not count; a
    quote outside braces is prose), then each span is decoded once: linear in
    ``len(text)``. Decoding from every ``{`` instead would be quadratic, and so would
    resuming after each failure (a ``JSONDecodeError`` counts the lines before it).
    """
    found: list[Any] = []
    depth, start, in_string, escaped_until = 0, 0, False, -1
    for mark in _STRUCTURE.finditer(text):
        at, char = mark.start(), mark.group()
        if at < escaped_until:
            continue
        if in_string:
            if char == "\\":
                escaped_until = at + 2
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = depth > 0
        elif char == "{":
            start = at if depth == 0 else start
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                with contextlib.suppress(ValueError, RecursionError):
                    found.append(_DECODER.decode(text[start : at + 1]))
    return found


def _skip(text: str, position: int) -> int:
    return _SPACE.match(text, position).end()  # type: ignore[union-attr]


def _expect(text: str, position: int, word: str) -> int:
    if not text.startswith(word, position):
        raise _NotCalls
    return position + len(word)


def _decode(text: str, position: int) -> tuple[Any, int]:
    if position >= len(text) or text[position] not in "{[":
        raise _NotCalls
    try:
        return _DECODER.raw_decode(text, position)
    except (ValueError, RecursionError):
        raise _NotCalls from None


def _finite(value: Any) -> bool:
    """Whether a decoded JSON value holds no NaN or infinity (which JSON has not)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


def canonical(value: Any) -> Any:
    """Return a JSON value with integral numbers as ints (``17.0`` -> ``17``), for comparing."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(key): canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def calls_key(calls: Sequence[ToolCall]) -> tuple[str, ...]:
    """Return what equal sets of calls share: each call's name and canonical arguments, sorted.

    The key ignores ids, the order of the calls and of argument keys, and how
    numbers are written.
    """
    return tuple(
        sorted(
            json.dumps([call["name"], canonical(call["args"])], sort_keys=True) for call in calls
        )
    )


@dataclass(frozen=True)
class CallVote:
    """The outcome of a vote on proposed calls.

    Attributes:
        calls: The winning calls, as the first proposal that made them wrote them.
        chosen: The index of that proposal.
        votes: How many proposals made equal calls.
        callers: How many proposals made any calls.
    """

    calls: list[ToolCall]
    chosen: int
    votes: int
    callers: int


def vote(texts: Sequence[str], tools: ToolSet) -> CallVote | None:
    """Return the calls most proposals propose, or None when most propose none.

    Ties go to the calls proposed first, so the first (greedy) proposal wins a tie.
    """
    parsed = [tools.proposed(text) for text in texts]
    keys = [None if calls is None else calls_key(calls) for calls in parsed]
    counts = Counter(key for key in keys if key is not None)
    callers = counts.total()
    if not counts or callers * 2 <= len(texts):
        return None
    best = max(counts, key=lambda key: (counts[key], -keys.index(key)))
    chosen = keys.index(best)
    return CallVote(parsed[chosen] or [], chosen, counts[best], callers)
