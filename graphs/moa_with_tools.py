"""MoA whose proposers may call tools (a calculator, a document search) before answering.

Each proposer's model is wrapped in :class:`ToolUsingModel`: it may call tools a few
times, then answers. Every call is streamed as a ``tool_called`` progress event
(Studio shows it with the node), traced as a run inside the proposer's node, and listed
at the top of the proposal, so the next layer and the aggregator see which results
an answer rests on. The aggregator answers without tools.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool
from langgraph.config import get_stream_writer
from langgraph.graph import StateGraph

from graphs import served_graph
from graphs.served import DEFAULT_PRESET, served_moa, served_preset
from graphs.tools import TOOLS
from moa_graph import AgentSpec, MoAConfig, resolve_model

MAX_TOOL_ROUNDS = 3
"""Tool-calling rounds a proposer gets before it must answer."""


class ToolUsingModel(BaseChatModel):
    """A chat model that may call tools before it answers.

    Attributes:
        inner: The model that decides, and answers.
        tools: The tools it may call.
        model_name: Shown as the model's identifier (the inner model's).
    """

    inner: BaseChatModel
    tools: Sequence[BaseTool]
    model_name: str = ""

    @property
    def _llm_type(self) -> str:
        return "tool-using"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        by_name = {t.name: t for t in self.tools}
        deciding = self.inner.bind_tools(list(self.tools))
        transcript = list(messages)
        used: list[str] = []
        usage = UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            model = deciding if round_ < MAX_TOOL_ROUNDS else self.inner
            reply = model.invoke(transcript)
            assert isinstance(reply, AIMessage)
            if reply.usage_metadata:
                usage = add_usage(usage, reply.usage_metadata)
            if not reply.tool_calls:
                break
            transcript.append(reply)
            for call in reply.tool_calls:
                chosen = by_name.get(call["name"])
                if chosen is None:
                    result = f"error: no tool named {call['name']!r}"
                else:
                    result = str(chosen.invoke(call["args"]))
                transcript.append(ToolMessage(result, tool_call_id=call["id"] or call["name"]))
                args = json.dumps(call["args"], ensure_ascii=False)
                used.append(f"{call['name']}({args}) -> {result}")
                get_stream_writer()(
                    {"event": "tool_called", "tool": call["name"], "args": call["args"]}
                    | {"result": result, "moa_model": self.model_name}
                )
        text = str(reply.text)
        if used:
            text = "Tool results:\n" + "\n".join(f"- {u}" for u in used) + "\n\n" + text
        answer = AIMessage(text, usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=answer)])


def with_tools(config: MoAConfig, tools: Sequence[BaseTool] = TOOLS) -> MoAConfig:
    """Give every proposer of ``config`` the tools; the aggregator keeps none."""

    def equipped(agent: AgentSpec, index: int) -> AgentSpec:
        model = resolve_model(agent, **config.sampling(agent, index))
        wrapped = ToolUsingModel(inner=model, tools=list(tools), model_name=agent.model_id)
        return agent.model_copy(update={"model": wrapped})

    layers = [[equipped(a, i) for i, a in enumerate(layer)] for layer in config.layers]
    return config.model_copy(update={"layers": layers})


def _served_with_tools(name: str) -> MoAConfig:
    return with_tools(served_preset(name))


def build(config: MoAConfig | None = None) -> StateGraph[Any, Any, Any, Any]:
    """Build the graph; ``config`` replaces the served preset (tests pass fakes)."""
    if config is None:
        config = served_preset(os.environ.get("MOA_GRAPHS_PRESET", DEFAULT_PRESET))
    return served_moa(with_tools(config), load=_served_with_tools)


make_graph = served_graph(build, "moa_with_tools")
