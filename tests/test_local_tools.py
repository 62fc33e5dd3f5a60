"""The local models' tool bridge without a model: prompts, grammars and streamed replies.

The real models use it in ``tests/local/test_tool_calls.py``.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.tool import tool_call
from langchain_core.outputs import ChatGenerationChunk

from moa_graph.local.tools import TOOLS_BLOCK, ToolRequest, as_text
from tests.tool_schemas import MULTIPLY

ADD = {**MULTIPLY, "function": {**MULTIPLY["function"], "name": "add"}}  # type: ignore[dict-item]


def request(**options: Any) -> tuple[ToolRequest, dict[str, Any]]:
    kwargs = {"tools": [MULTIPLY, ADD], "temperature": 0, **options}
    found = ToolRequest.pop(kwargs)
    assert found is not None
    return found, kwargs


def test_the_tools_go_into_the_system_prompt_in_the_templates_words() -> None:
    tools, rest = request(tool_choice="auto", parallel_tool_calls=False)
    assert rest == {"temperature": 0}  # nothing of the tools reaches llama.cpp
    prompt = tools.prompt([SystemMessage("Be brief."), HumanMessage("17 * 23?")])
    system = prompt[0].text
    assert system.startswith("Be brief.\n\n# Tools\n\n")
    assert f"<tools>\n{json.dumps(MULTIPLY)}\n{json.dumps(ADD)}\n</tools>" in system
    assert system.endswith(
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )
    assert prompt[1:] == [HumanMessage("17 * 23?")]
    alone = tools.prompt([HumanMessage("Hi")])
    assert isinstance(alone[0], SystemMessage) and alone[0].text.startswith("# Tools")
    assert "{tools}" in TOOLS_BLOCK


def test_earlier_calls_and_results_are_written_in_tags() -> None:
    call = tool_call(name="multiply", args={"a": 17, "b": 23}, id="c1")
    written = as_text(
        [
            HumanMessage("17 * 23?"),
            AIMessage("", tool_calls=[call]),
            ToolMessage("391", tool_call_id="c1"),
            ToolMessage("no more", tool_call_id="c2"),
        ]
    )
    assert written == [
        HumanMessage("17 * 23?"),
        AIMessage(
            '<tool_call>\n{"name": "multiply", "arguments": {"a": 17, "b": 23}}\n</tool_call>'
        ),
        HumanMessage(
            "<tool_response>\n391\n</tool_response>\n<tool_response>\nno more\n</tool_response>"
        ),
    ]


def test_a_required_or_named_call_is_constrained_by_a_json_schema_grammar() -> None:
    auto, kwargs = request()
    auto.request(kwargs, None)
    assert "extra_body" not in kwargs

    required, kwargs = request(tool_choice="required")
    required.request(kwargs, {"cache_prompt": False})
    grammar = kwargs["extra_body"]["json_schema"]
    assert kwargs["extra_body"]["cache_prompt"] is False  # the model's own body is kept
    assert [o["properties"]["name"] for o in grammar["anyOf"]] == [
        {"const": "multiply"},
        {"const": "add"},
    ]
    named, kwargs = request(tool_choice={"type": "function", "function": {"name": "add"}})
    named.request(kwargs, None)
    assert kwargs["extra_body"]["json_schema"]["properties"]["name"] == {"const": "add"}
    assert kwargs["extra_body"]["json_schema"]["required"] == ["name", "arguments"]

    none, kwargs = request(tool_choice="none")
    none.request(kwargs, None)
    assert "extra_body" not in kwargs
    assert none.prompt([HumanMessage("Hi")]) == [HumanMessage("Hi")]  # no tools offered


def chunks(*texts: str) -> list[ChatGenerationChunk]:
    return [ChatGenerationChunk(message=AIMessageChunk(content=t)) for t in texts]


def read(tools: ToolRequest, *texts: str) -> tuple[list[str], list[ChatGenerationChunk]]:
    reading = tools.stream()
    tokens: list[str] = []
    passed: list[ChatGenerationChunk] = []
    for chunk in chunks(*texts):
        for out, token in reading.take(chunk):
            tokens.append(token)
            passed.append(out)
    for out, token in reading.end():
        tokens.append(token)
        passed.append(out)
    return tokens, passed


def merged(passed: list[ChatGenerationChunk]) -> AIMessageChunk:
    total = passed[0]
    for chunk in passed[1:]:
        total = total + chunk
    assert isinstance(total.message, AIMessageChunk)
    return total.message


def test_a_streamed_call_is_held_and_comes_out_as_a_call() -> None:
    tools, _ = request()
    tokens, passed = read(
        tools,
        "",
        "```json\n",
        '{"name": "multiply", ',
        '"arguments": ',
        '{"a": 17, "b": 23}}',
        "\n```",
    )
    assert tokens == [""] * len(tokens)  # nothing of the call is shown as text
    message = merged(passed)
    assert message.text == ""
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("multiply", {"a": 17, "b": 23})
    ]


def test_streamed_text_passes_through_as_it_comes() -> None:
    tools, _ = request()
    tokens, passed = read(tools, "", "  It", " is", " 391.")
    assert tokens == ["", "", "  It", " is", " 391."]  # held, then passed on once text
    assert merged(passed).text == "  It is 391."


def test_a_held_reply_that_is_not_a_call_comes_out_whole_as_text() -> None:
    tools, _ = request()
    tokens, passed = read(tools, "```python\n", "print(17 * 23)\n", "```")
    assert tokens[-1] == "```python\nprint(17 * 23)\n```"
    assert merged(passed).text == tokens[-1]
    assert merged(passed).tool_calls == []
    _, made_up = read(tools, '{"name": "say_hello", "arguments": {}}')
    assert merged(made_up).tool_calls == []
