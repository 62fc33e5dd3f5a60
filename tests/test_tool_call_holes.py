"""A tool call that is cut off or malformed is never returned as a call (issue 25, point 6).

The loopback fake OpenAI server answers the aggregator's calls with the tool call a
test sets, plain or streamed as OpenAI streams them (chunked, kept alive, a few
characters of arguments per event), ending with the test's ``finish_reason``. The
MoA is served by a real ``moa serve`` subprocess and used in-process as ``ChatMoA``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage

from moa_graph.calls.replies import ToolCallError, checked
from moa_graph.errors import ModelCallError
from moa_graph.run.chat_model import ChatMoA
from tests import tool_replies
from tests.openai_server import FakeOpenAIServer, _Handler, serve
from tests.server_process import ServedMoA, serve_configs

SHELL = {
    "type": "function",
    "function": {
        "name": "run_shell",
        "description": "Run a shell command.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
}
CUT_OFF = '{"command": "rm -rf /home/user/build'
"""The arguments of a call cut off at the token limit: LangChain's stream parser would
close the string and call ``rm -rf /home/user/build``."""

SERVED_PREFIX = "upstream failure: aggregator 'gamma' failed: openai:gamma: ToolCallError: "
CUT_OFF_SAYS = (
    "the call of tool 'run_shell' was cut off at the token limit "
    "(finish_reason 'length'), so it is not a tool call; raise the agent's max_tokens"
)


@dataclass
class Answer:
    """The aggregator's next answer: one call of ``run_shell`` with these arguments."""

    arguments: str
    finish_reason: str


class Upstream:
    """The fake server, answering the aggregator (``gamma``) with :attr:`answer`."""

    def __init__(self, server: FakeOpenAIServer) -> None:
        self.server = server
        self.answer = Answer('{"command": "ls"}', "tool_calls")
        server.fault = self._fault

    def _fault(self, handler: _Handler, request: dict[str, Any], number: int) -> bool:
        if request["model"] != "gamma" or not request.get("tools"):
            return False
        calls = [
            {
                "id": f"call_{number}",
                "type": "function",
                "function": {"name": "run_shell", "arguments": self.answer.arguments},
            }
        ]
        base = {"id": "chatcmpl-cut", "created": 1, "model": "gamma"}
        usage = {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
        if not request.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": calls}
            choice = {"index": 0, "message": message, "finish_reason": self.answer.finish_reason}
            body = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            handler._send_json(200, body)
            return True
        chunks = [
            {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            for delta in tool_replies.call_deltas(calls)
        ]
        finish = {"index": 0, "delta": {}, "finish_reason": self.answer.finish_reason}
        chunks.append({"choices": [finish]})
        chunks.append({"choices": [], "usage": usage})
        events = [json.dumps({**base, "object": "chat.completion.chunk", **c}) for c in chunks]
        handler.stream(request, [*events, "[DONE]"], self.server.shape)
        return True

    def aggregator_calls(self) -> int:
        return self.server.calls["gamma"]


@dataclass
class Setup:
    moa: ServedMoA
    upstream: Upstream


def _config(url: str, **settings: Any) -> dict[str, Any]:
    def agent(model: str) -> dict[str, Any]:
        return {"model": f"openai:{model}", "base_url": url}

    return {
        "name": "tool-moa",
        "layers": [[agent("alpha")]],
        "aggregator": agent("gamma"),
        **settings,
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("serve-tool-holes")
    with serve() as server:
        upstream = Upstream(server)
        with serve_configs(server, [_config(server.url)], directory) as served:
            yield Setup(served.moa, upstream)


@pytest.fixture
def client(setup: Setup) -> Iterator[openai.OpenAI]:
    yield openai.OpenAI(base_url=setup.moa.url, api_key="unused", max_retries=0)
    setup.upstream.answer = Answer('{"command": "ls"}', "tool_calls")


def _ask(client: openai.OpenAI, stream: bool) -> Any:
    messages: Any = [{"role": "user", "content": "Clean the build folder."}]
    answer = client.chat.completions.create(
        model="tool-moa",
        messages=messages,
        tools=[SHELL],
        stream=stream,  # type: ignore[list-item]
    )
    return list(answer) if stream else answer


def _refused(setup: Setup, client: openai.OpenAI, stream: bool) -> str:
    """Ask, expect a 502 and no retry of the aggregator; return the error's message."""
    before = setup.upstream.aggregator_calls()
    with pytest.raises(openai.APIStatusError) as caught:
        _ask(client, stream)
    error = caught.value
    assert (error.status_code, error.code) == (502, "agents_failed")
    assert isinstance(error.body, dict) and error.body["failed_agents"] == ["gamma"]
    # Not retried: the same token limit would cut the same call again.
    assert setup.upstream.aggregator_calls() == before + 1
    message: str = error.body["message"]
    return message


@pytest.mark.parametrize("stream", [False, True])
def test_a_well_formed_call_is_still_a_call(
    setup: Setup, client: openai.OpenAI, stream: bool
) -> None:
    answer = _ask(client, stream)
    if stream:
        pieces = [d for c in answer if c.choices for d in c.choices[0].delta.tool_calls or []]
        arguments = "".join(p.function.arguments or "" for p in pieces)
        finish = [c.choices[0].finish_reason for c in answer if c.choices][-1]
    else:
        (call,) = answer.choices[0].message.tool_calls
        arguments, finish = call.function.arguments, answer.choices[0].finish_reason
    assert (json.loads(arguments), finish) == ({"command": "ls"}, "tool_calls")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (Answer(CUT_OFF, "length"), CUT_OFF_SAYS),
        (
            Answer('["rm", "-rf", "/home/user/build"]', "tool_calls"),
            "the arguments of tool 'run_shell' are an array, not a JSON object",
        ),
        # A stream that ends mid-arguments without saying why: LangChain would close the
        # string; the arguments as sent are not JSON.
        (Answer(CUT_OFF, "tool_calls"), "the arguments of tool 'run_shell' are not valid JSON"),
    ],
    ids=["cut-off-at-the-token-limit", "a-json-array", "not-json-without-a-length-finish"],
)
def test_a_broken_call_is_an_error_naming_the_tool_not_a_call(
    setup: Setup, client: openai.OpenAI, stream: bool, answer: Answer, says: str
) -> None:
    setup.upstream.answer = answer
    assert _refused(setup, client, stream) == SERVED_PREFIX + says


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with serve() as server:
        yield Upstream(server)


# The aggregator streams its call when its tokens are timed (the default), and an
# async run asks for it whole when every limit is the same.
WHOLE = {"timeout_s": 60, "first_token_timeout_s": 60, "idle_timeout_s": 60}


@pytest.mark.parametrize(
    ("settings", "answer", "says"),
    [
        ({}, Answer(CUT_OFF, "length"), CUT_OFF_SAYS),
        (WHOLE, Answer(CUT_OFF, "length"), CUT_OFF_SAYS),
        (
            {},
            Answer("[1, 2]", "tool_calls"),
            "the arguments of tool 'run_shell' are an array, not a JSON object",
        ),
        # LangChain's client refuses the whole reply before it is seen: no name.
        (
            WHOLE,
            Answer("[1, 2]", "tool_calls"),
            "the arguments of tool call 1 are an array, not a JSON object",
        ),
    ],
    ids=["cut-off-streamed", "cut-off-whole", "array-streamed", "array-whole"],
)
async def test_chat_moa_refuses_the_same_calls(
    upstream: Upstream, settings: dict[str, Any], answer: Answer, says: str
) -> None:
    upstream.answer = answer
    model = ChatMoA(_config(upstream.server.url, **settings)).bind_tools([SHELL])
    with pytest.raises(ModelCallError) as caught:
        await model.ainvoke("Clean the build folder.")
    first_line = str(caught.value).splitlines()[0]
    assert first_line == f"aggregator 'gamma' failed: openai:gamma: ToolCallError: {says}"
    assert upstream.aggregator_calls() == 1
    (call,) = [r for r in upstream.server.requests if r["model"] == "gamma"]
    assert bool(call.get("stream")) == (settings != WHOLE)


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({"stop_reason": "max_tokens"}, "stop_reason 'max_tokens'"),  # Anthropic
        ({"done_reason": "length"}, "done_reason 'length'"),  # Ollama
        ({"finish_reason": "MAX_TOKENS"}, "finish_reason 'MAX_TOKENS'"),  # Google
    ],
)
def test_other_providers_token_limits_cut_a_call_off(metadata: dict[str, str], reason: str) -> None:
    call = {"name": "run_shell", "args": {"command": "ls"}, "id": "c1", "type": "tool_call"}
    reply = AIMessage("", tool_calls=[call], response_metadata=metadata)  # type: ignore[list-item]
    with pytest.raises(ToolCallError) as caught:
        checked(reply)
    assert str(caught.value) == (
        f"the call of tool 'run_shell' was cut off at the token limit ({reason}), "
        "so it is not a tool call; raise the agent's max_tokens"
    )
    # Text cut off at the limit is still an answer, as the provider says it is.
    text = AIMessage("a long answer", response_metadata=metadata)
    assert checked(text).text == "a long answer"
