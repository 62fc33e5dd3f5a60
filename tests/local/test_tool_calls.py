"""Tool calls and structured output from the real local models (greedy, so repeatable).

Few and bounded: short completion budgets, one tiny proposer where a mixture is needed,
the 1.5B only where the tiny model cannot do the work.
"""

from __future__ import annotations

import json

import httpx
import pytest
from langchain.agents import create_agent
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from graphs.tools import calculator
from moa_graph import ChatMoA, MoAConfig
from moa_graph.local import chat_model, get_model
from moa_graph.local.server import server_for
from moa_graph.local.tools import TOOLS_BLOCK


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def mixture(aggregator: str, **config: object) -> MoAConfig:
    """One tiny proposer and a local aggregator, greedy, with a short budget."""
    return MoAConfig(
        layers=[["local:smollm2-135m"]],
        aggregator=f"local:{aggregator}",
        temperature=0,
        max_tokens=128,
        **config,  # type: ignore[arg-type]
    )


@pytest.mark.local
@pytest.mark.local_large
def test_an_agent_runs_the_call_of_a_local_aggregator_and_answers_from_its_result(
    smollm2: str, qwen_1_5b: str
) -> None:
    agent = create_agent(ChatMoA(mixture(qwen_1_5b)), tools=[calculator])
    out = agent.invoke({"messages": [("user", "What is 17 times 23? Use the calculator.")]})
    results = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert results and results[0].text == "391"  # the calculator really ran on its call
    assert "391" in out["messages"][-1].text


@pytest.mark.local
@pytest.mark.local_large
def test_a_made_up_tool_stays_text_and_the_tools_block_is_the_models_own(qwen_1_5b: str) -> None:
    model = chat_model(qwen_1_5b, temperature=0, max_tokens=64).bind_tools([multiply])
    reply = model.invoke("Say hello.")
    assert reply.tool_calls == []
    invented = json.loads(reply.text.strip().removeprefix("```json").removesuffix("```"))
    assert invented["name"] != "multiply"  # it called a tool that does not exist: text
    # The block the prompt carries is the one the model's own template writes.
    url = server_for(get_model(qwen_1_5b)).base_url
    with httpx.Client(trust_env=False) as client:
        template = client.get(f"{url}/props").json()["chat_template"]
    head, tail = TOOLS_BLOCK.format(tools="{tools}").split("{tools}")
    # The template holds them as string literals, escaped as JSON escapes them.
    assert json.dumps(head)[1:-1] in template
    example = '{"name": <function-name>, "arguments": <args-json-object>}'
    assert example in tail  # the template doubles its braces, which the model then copies
    doubled = tail.replace(example, "{" + example + "}")
    assert json.dumps(doubled + "<|im_end|>")[1:-1] in template


@pytest.mark.local
def test_tool_choice_required_returns_a_valid_call(smollm2: str) -> None:
    model = chat_model(smollm2, temperature=0, max_tokens=64)
    free = model.bind_tools([multiply]).invoke("Say hello.")
    assert free.tool_calls == []  # left free, the tiny model answers in text
    reply = model.bind_tools([multiply], tool_choice="required").invoke("Say hello.")
    (call,) = reply.tool_calls
    assert call["name"] == "multiply"
    assert isinstance(call["args"]["a"], int) and isinstance(call["args"]["b"], int)
    assert reply.text == ""


class Capital(BaseModel):
    city: str = Field(max_length=40)
    country: str = Field(max_length=40)


@pytest.mark.local
@pytest.mark.local_large
def test_structured_output_of_a_local_aggregator_follows_the_schema(
    smollm2: str, qwen_1_5b: str
) -> None:
    moa = ChatMoA(mixture(qwen_1_5b))
    capital = moa.with_structured_output(Capital, method="json_schema", attempts=1).invoke(
        "What is the capital of France?"
    )
    assert isinstance(capital, Capital)
    assert capital.city == "Paris"
