"""``ChatMoA.with_structured_output(..., method="json_schema")``: the schema as response_format.

The aggregator, an OpenAI-compatible model (the loopback fake server), is asked for JSON
under the schema; its answer is parsed and validated. The local aggregator's grammar is
tested on the real model in ``tests/local/test_tool_calls.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from moa_graph import MoAConfig
from moa_graph.errors import StructuredOutputError
from moa_graph.run.chat_model import ChatMoA
from tests.openai_server import FakeOpenAIServer


class Weather(BaseModel):
    city: str
    degrees: float
    sunny: bool


def mixture(upstream: FakeOpenAIServer) -> ChatMoA:
    def agent(model: str) -> dict[str, Any]:
        return {"model": f"openai:{model}", "base_url": upstream.url}

    return ChatMoA(MoAConfig(layers=[[agent("alpha")]], aggregator=agent("gamma")))


def test_a_pydantic_schema_is_the_aggregators_response_format(
    openai_server: FakeOpenAIServer,
) -> None:
    weather = mixture(openai_server).with_structured_output(Weather, method="json_schema")
    assert weather.invoke("The weather in Paris?") == Weather(
        city="sample city", degrees=2.5, sunny=True
    )
    (request,) = [r for r in openai_server.requests if r["model"] == "gamma"]
    response_format = request["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Weather"
    assert response_format["json_schema"]["schema"]["required"] == ["city", "degrees", "sunny"]
    assert all("response_format" not in r for r in openai_server.requests if r["model"] == "alpha")


def test_a_json_schema_answer_is_validated(openai_server: FakeOpenAIServer) -> None:
    schema = {
        "title": "Count",
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 10}},
        "required": ["n"],
    }
    moa = mixture(openai_server)
    raw = moa.with_structured_output(schema, method="json_schema", include_raw=True).invoke("n?")
    assert raw["parsed"] is None  # the fake answers n=3, below the minimum
    assert str(raw["parsing_error"]) == "n: 3 is less than the minimum of 10"
    with pytest.raises(StructuredOutputError, match="did not validate as Count after 2 attempts"):
        moa.with_structured_output(schema, method="json_schema").invoke("n?")
