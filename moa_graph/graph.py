"""Graph construction: one node per agent, layers fanned out in parallel.

The graph is returned uncompiled so the caller chooses the checkpointer, store and
cache, and can embed it in a larger application.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from moa_graph.config import AgentSpec, MoAConfig, config_from_data, load_config
from moa_graph.errors import InputError
from moa_graph.models import resolve_model
from moa_graph.presets import load_preset
from moa_graph.prompts import build_messages
from moa_graph.state import MoAInput, MoAOutput, MoAState, Proposal, user_turn

AGGREGATOR_NODE = "aggregator"
"""Name of the aggregator's node."""

AGGREGATOR_TAG = "moa:aggregator"
"""Tag on the aggregator's model call: keep ``stream_mode="messages"`` chunks with it
to get only the final answer."""

PROPOSER_TAG = "moa:proposer"
"""Tag on every proposer's model call."""


def proposer_node(layer: int, agent: str) -> str:
    """Return the node name of a proposer, e.g. ``layer1/Qwen1.5-72B-Chat``."""
    return f"layer{layer}/{agent}"


def resolve_config(config: MoAConfig | Mapping[str, Any] | str | Path) -> MoAConfig:
    """Accept a config, plain config data, a preset name, or a config file path.

    Raises:
        ConfigError: The preset or file is unknown, or the config invalid.
    """
    if isinstance(config, MoAConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_data(config)
    if isinstance(config, Path) or Path(config).suffix in (".yaml", ".yml", ".toml", ".json"):
        return load_config(config)
    return load_preset(config)


@dataclass(frozen=True)
class _Agent:
    """An agent of a built graph: where it sits, and its resolved model."""

    spec: AgentSpec
    model: BaseChatModel
    layer: int  # 1-based for proposers; len(layers) + 1 for the aggregator
    index: int
    config: MoAConfig

    @property
    def role(self) -> str:
        return "aggregator" if self.layer > len(self.config.layers) else "proposer"

    @property
    def name(self) -> str:
        return self.spec.name or ""

    def metadata(self) -> dict[str, Any]:
        return {
            "moa_role": self.role,
            "moa_layer": self.layer,
            "moa_agent": self.name,
            "moa_model": self.spec.model_id,
            "moa_preset": self.config.name,
        }

    def call_config(self) -> RunnableConfig:
        tag = AGGREGATOR_TAG if self.role == "aggregator" else PROPOSER_TAG
        return {
            "run_name": self.name,
            "tags": ["moa", tag, f"moa:layer:{self.layer}"],
            "metadata": self.metadata(),
        }

    def prompt(self, state: MoAState) -> list[AnyMessage]:
        """Return the messages this agent receives: the conversation and references."""
        turn = user_turn(state["messages"])
        references = [
            p.content
            for p in state.get("proposals", [])
            if p.turn == turn and p.layer == self.layer - 1
        ]
        return build_messages(  # type: ignore[return-value]
            state["messages"],
            system_prompt=self.spec.system_prompt,
            references=references,
            aggregate_prompt=self.config.aggregate_prompt,
        )

    def started(self, state: MoAState) -> float:
        writer = get_stream_writer()
        if self.role == "aggregator":
            writer({"event": "aggregator_started", **self.metadata()})
        elif self.index == 0:
            agents = [a.name for a in self.config.layers[self.layer - 1]]
            writer({"event": "layer_started", "moa_layer": self.layer, "moa_agents": agents})
        if self.role == "proposer":
            writer({"event": "agent_started", **self.metadata()})
        return time.perf_counter()

    def finished(self, state: MoAState, reply: AIMessage, started: float) -> dict[str, Any]:
        usage = reply.usage_metadata or UsageMetadata(
            input_tokens=0, output_tokens=0, total_tokens=0
        )
        latency = time.perf_counter() - started
        get_stream_writer()(
            {
                "event": "agent_finished",
                **self.metadata(),
                "latency_s": latency,
                "input_tokens": usage["input_tokens"],
                "output_tokens": usage["output_tokens"],
            }
        )
        if self.role == "aggregator":
            turn = user_turn(state["messages"])
            total = usage
            for proposal in state.get("proposals", []):
                if proposal.turn == turn:
                    total = add_usage(total, proposal.usage)
            return {"messages": [reply], "usage": total}
        proposal = Proposal(
            turn=user_turn(state["messages"]),
            layer=self.layer,
            index=self.index,
            agent=self.name,
            model=self.spec.model_id,
            content=reply.text,
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            latency_s=latency,
        )
        return {"proposals": [proposal]}

    def invoke(self, state: MoAState) -> dict[str, Any]:
        started = self.started(state)
        reply = self.model.invoke(self.prompt(state), self.call_config())
        return self.finished(state, _as_ai_message(reply), started)

    async def ainvoke(self, state: MoAState) -> dict[str, Any]:
        started = self.started(state)
        reply = await self.model.ainvoke(self.prompt(state), self.call_config())
        return self.finished(state, _as_ai_message(reply), started)


def _as_ai_message(reply: Any) -> AIMessage:
    if not isinstance(reply, AIMessage):
        raise TypeError(f"a chat model returned {type(reply).__name__}, not an AIMessage")
    return reply


def check_conversation(messages: Sequence[AnyMessage]) -> None:
    """Check that a conversation can be answered, before any model is called.

    Raises:
        InputError: The conversation is empty, its last message is not from the
            user, or that message is empty.
    """
    if not messages:
        raise InputError("the conversation is empty: send at least one user message")
    last = messages[-1]
    if not isinstance(last, HumanMessage):
        raise InputError(f"the last message must be from the user, not a {last.type} message")
    if not last.text.strip():
        raise InputError("the prompt is empty")


def create_moa(
    config: MoAConfig | Mapping[str, Any] | str | Path,
    *,
    context_schema: type[Any] | None = None,
) -> StateGraph[MoAState, Any, MoAInput, MoAOutput]:
    """Build a Mixture-of-Agents graph.

    Every proposer of every layer and the aggregator is its own node. Layer 1 fans
    out from the start; each node of layer ``i + 1`` waits for all of layer ``i``;
    the aggregator waits for the last layer. Models are resolved here, so a missing
    API key fails before anything runs.

    Args:
        config: A :class:`MoAConfig`, plain config data, a preset name, or the path
            of a YAML, TOML or JSON config file.
        context_schema: Passed to :class:`StateGraph`, for graphs that read runtime
            options.

    Returns:
        The uncompiled graph; compile it with any checkpointer.

    Raises:
        ConfigError: The config is invalid or a model cannot be resolved.

    Example:
        >>> graph = create_moa("together-moa-lite").compile()  # doctest: +SKIP
        >>> graph.invoke({"messages": [("user", "Why is the sky blue?")]})  # doctest: +SKIP
    """
    config = resolve_config(config)
    builder: StateGraph[MoAState, Any, MoAInput, MoAOutput] = StateGraph(
        MoAState, context_schema, input_schema=MoAInput, output_schema=MoAOutput
    )
    previous: list[str] = []
    for layer_number, layer in enumerate(config.layers, 1):
        names = [proposer_node(layer_number, spec.name or "") for spec in layer]
        for index, (name, spec) in enumerate(zip(names, layer, strict=True)):
            _add_agent(
                builder,
                name,
                _Agent(spec, _model(config, spec, index), layer_number, index, config),
            )
            if previous:
                builder.add_edge(previous, name)
        if not previous:
            builder.add_conditional_edges(START, _start(names), names)
        previous = names
    aggregator = _Agent(
        config.aggregator,
        _model(config, config.aggregator, 0),
        len(config.layers) + 1,
        0,
        config,
    )
    _add_agent(builder, AGGREGATOR_NODE, aggregator)
    builder.add_edge(previous, AGGREGATOR_NODE)
    builder.add_edge(AGGREGATOR_NODE, END)
    return builder


def _model(config: MoAConfig, spec: AgentSpec, index: int) -> BaseChatModel:
    return resolve_model(spec, **config.sampling(spec, index))


def _add_agent(builder: StateGraph[Any, Any, Any, Any], name: str, agent: _Agent) -> None:
    metadata = {
        "role": agent.role,
        "layer": agent.layer,
        "agent": agent.name,
        "model": agent.spec.model_id,
    }
    builder.add_node(
        name, RunnableLambda(agent.invoke, agent.ainvoke, name=name), metadata=metadata
    )


def _start(first_layer: list[str]) -> Any:
    def check_input(state: MoAState) -> list[str]:
        check_conversation(state["messages"])
        return first_layer

    return check_input
