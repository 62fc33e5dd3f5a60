"""``ChatMoA.with_structured_output`` validates every kind of schema (issue 25, point 6).

The aggregator, a fake chat model, answers by calling the schema as a tool with the
arguments a test gives, one set per call (the last repeats).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import pytest
import typing_extensions
from langchain_core.messages import AIMessage
from pydantic import BaseModel

from moa_graph import MoAConfig
from moa_graph.errors import StructuredOutputError
from moa_graph.run.chat_model import ChatMoA
from tests.fake_chat import FakeChatModel

Make = Callable[..., FakeChatModel]


class PersonModel(BaseModel):
    name: str
    age: int


class PersonTyped(typing.TypedDict):  # pydantic cannot take it on Python 3.11
    name: str
    age: int


class PersonExtensions(typing_extensions.TypedDict):
    name: str
    age: int


PERSON_SCHEMA = {
    "title": "PersonSchema",
    "description": "A person.",
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
PERSON_FUNCTION = {
    "name": "PersonFunction",
    "description": "A person.",
    "parameters": {k: v for k, v in PERSON_SCHEMA.items() if k not in ("title", "description")},
}
SCHEMAS: list[Any] = [PersonModel, PersonTyped, PersonExtensions, PERSON_SCHEMA, PERSON_FUNCTION]
IDS = ["pydantic", "typing.TypedDict", "typing_extensions.TypedDict", "json-schema", "function"]


def _name(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("title") or schema["name"])
    return str(schema.__name__)


def _moa(fake_model: Make, schema: Any, *answers: dict[str, Any]) -> tuple[ChatMoA, FakeChatModel]:
    """Return a MoA whose aggregator calls the schema's tool with ``answers`` in turn."""

    def reply(model: FakeChatModel, messages: list[Any]) -> AIMessage:
        args = answers[min(len(model.calls), len(answers)) - 1]
        call = {"name": _name(schema), "args": args, "id": "c1", "type": "tool_call"}
        return AIMessage("", tool_calls=[call])  # type: ignore[list-item]

    aggregator = fake_model("agg", reply=reply)
    return ChatMoA(MoAConfig(layers=[[fake_model("p")]], aggregator=aggregator)), aggregator


def _same(value: Any) -> dict[str, Any]:
    return value.model_dump() if isinstance(value, BaseModel) else dict(value)


@pytest.mark.parametrize("schema", SCHEMAS, ids=IDS)
def test_a_valid_answer_is_returned(fake_model: Make, schema: Any) -> None:
    moa, _ = _moa(fake_model, schema, {"name": "Ada", "age": 36})
    assert _same(moa.with_structured_output(schema).invoke("Who?")) == {"name": "Ada", "age": 36}


# What the user reads after "the MoA's answer did not validate as <name> after 2 attempts: ".
WRONG_TYPE = {
    "pydantic": "age: Input should be a valid integer, unable to parse string as an integer",
    "typing.TypedDict": "age: 'very old' is not of type 'integer'",  # by its JSON schema
    "typing_extensions.TypedDict": (
        "age: Input should be a valid integer, unable to parse string as an integer"
    ),
    "json-schema": "age: 'very old' is not of type 'integer'",
    "function": "age: 'very old' is not of type 'integer'",
}
MISSING = {
    "pydantic": "name: Field required (and 1 more)",
    "typing.TypedDict": "'name' is a required property",
    "typing_extensions.TypedDict": "name: Field required (and 1 more)",
    "json-schema": "'name' is a required property",
    "function": "'name' is a required property",
}


@pytest.mark.parametrize(("schema", "kind"), list(zip(SCHEMAS, IDS, strict=True)), ids=IDS)
@pytest.mark.parametrize(
    ("answer", "reasons"),
    [({"name": "Ada", "age": "very old"}, WRONG_TYPE), ({}, MISSING)],
    ids=["wrong-type", "empty"],
)
async def test_an_invalid_answer_is_asked_again_then_one_clear_error(
    fake_model: Make, schema: Any, kind: str, answer: dict[str, Any], reasons: dict[str, str]
) -> None:
    moa, aggregator = _moa(fake_model, schema, answer)
    with pytest.raises(StructuredOutputError) as caught:
        await moa.with_structured_output(schema).ainvoke("Who?")
    assert str(caught.value) == (
        f"the MoA's answer did not validate as {_name(schema)} after 2 attempts: {reasons[kind]}"
    )
    assert len(aggregator.calls) == 2  # one retry, then the error


@pytest.mark.parametrize("schema", SCHEMAS, ids=IDS)
def test_a_retry_that_validates_is_the_answer(fake_model: Make, schema: Any) -> None:
    moa, aggregator = _moa(fake_model, schema, {"name": "Ada"}, {"name": "Ada", "age": 36})
    assert _same(moa.with_structured_output(schema).invoke("Who?")) == {"name": "Ada", "age": 36}
    assert len(aggregator.calls) == 2


@pytest.mark.parametrize("attempts", [0, -1])
def test_fewer_than_one_attempt_is_refused(fake_model: Make, attempts: int) -> None:
    moa, _ = _moa(fake_model, PERSON_SCHEMA, {"name": "Ada", "age": 36})
    with pytest.raises(ValueError) as caught:
        moa.with_structured_output(PERSON_SCHEMA, attempts=attempts)
    assert str(caught.value) == f"attempts must be 1 or more, not {attempts}"


def test_one_attempt_makes_one_run(fake_model: Make) -> None:
    moa, aggregator = _moa(fake_model, PERSON_SCHEMA, {})
    with pytest.raises(StructuredOutputError, match="after 1 attempts: 'name' is a required"):
        moa.with_structured_output(PERSON_SCHEMA, attempts=1).invoke("Who?")
    assert len(aggregator.calls) == 1


def test_a_json_schema_that_is_itself_invalid_is_refused(fake_model: Make) -> None:
    moa, _ = _moa(fake_model, PERSON_SCHEMA, {})
    schema = {**PERSON_SCHEMA, "properties": {"age": {"type": "whole number"}}}
    with pytest.raises(ValueError) as caught:
        moa.with_structured_output(schema)
    assert str(caught.value) == (
        "the JSON schema is not valid: 'whole number' is not valid under any of the given schemas"
    )


@pytest.mark.parametrize("schema", SCHEMAS, ids=IDS)
def test_include_raw_reports_an_invalid_answer_as_a_parsing_error(
    fake_model: Make, schema: Any
) -> None:
    moa, _ = _moa(fake_model, schema, {"name": "Ada", "age": "very old"})
    result = moa.with_structured_output(schema, include_raw=True).invoke("Who?")
    assert result["parsed"] is None and result["parsing_error"] is not None
    assert isinstance(result["raw"], AIMessage) and result["raw"].tool_calls

    moa, _ = _moa(fake_model, schema, {"name": "Ada", "age": 36})
    result = moa.with_structured_output(schema, include_raw=True).invoke("Who?")
    assert _same(result["parsed"]) == {"name": "Ada", "age": 36}
    assert result["parsing_error"] is None
