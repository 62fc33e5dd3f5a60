"""Graph construction: one node per agent, layers fanned out in parallel.

The graph is returned uncompiled so the caller chooses the checkpointer, store and
cache, and can embed it in a larger application.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.config import get_stream_writer
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import END, START, StateGraph

from moa_graph import aggregation
from moa_graph.config import AgentSpec, MoAConfig, config_from_data, load_config
from moa_graph.errors import InputError, LayerError, ModelCallError, StreamInterruptedError
from moa_graph.models import resolve_model
from moa_graph.presets import load_preset
from moa_graph.prompts import build_messages
from moa_graph.reliability import CallPolicy, acall, call, call_policy, fit_references, input_budget
from moa_graph.state import (
    AgentFailed,
    AgentFinished,
    AgentInfo,
    AgentStarted,
    AggregatorStarted,
    LayerStarted,
    MoAInput,
    MoAOutput,
    MoAState,
    Proposal,
    user_turn,
)

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
    policy: CallPolicy
    fallbacks: tuple[tuple[AgentSpec, BaseChatModel, CallPolicy], ...] = ()
    stream: bool = True  # whether the model streams its tokens to a streaming caller

    @property
    def role(self) -> str:
        return "aggregator" if self.layer > len(self.config.layers) else "proposer"

    @property
    def name(self) -> str:
        return self.spec.name or ""

    @property
    def node(self) -> str:
        """The agent's node name."""
        if self.role == "aggregator":
            return AGGREGATOR_NODE
        return proposer_node(self.layer, self.name)

    def metadata(self) -> AgentInfo:
        return AgentInfo(
            moa_role="aggregator" if self.role == "aggregator" else "proposer",
            moa_layer=self.layer,
            moa_agent=self.name,
            moa_model=self.spec.model_id,
            moa_preset=self.config.name,
        )

    def call_config(self) -> RunnableConfig:
        tag = AGGREGATOR_TAG if self.role == "aggregator" else PROPOSER_TAG
        tags = ["moa", tag, f"moa:layer:{self.layer}"]
        return {
            "run_name": self.name,
            "tags": tags if self.stream else [*tags, TAG_NOSTREAM],
            "metadata": dict(self.metadata()),
        }

    def references(self, state: MoAState) -> list[str]:
        """Return the previous layer's responses to the latest turn."""
        turn = user_turn(state["messages"])
        return [
            p.content
            for p in state.get("proposals", [])
            if p.turn == turn and p.layer == self.layer - 1 and p.ok
        ]

    def prompt(self, state: MoAState, references: list[str] | None = None) -> list[AnyMessage]:
        """Return the messages this agent receives: the conversation and references."""
        if references is None:
            references = self.references(state)
        strategy = self.config.aggregation if self.role == "aggregator" else "synthesize"
        if strategy == "rank":
            return aggregation.rank_messages(state["messages"], references)  # type: ignore[return-value]
        hint = aggregation.vote_hint(references) if strategy == "vote-hint" else ""
        return build_messages(  # type: ignore[return-value]
            state["messages"],
            system_prompt=self.spec.system_prompt,
            references=references,
            aggregate_prompt=self.config.aggregate_prompt + hint,
        )

    def strategy_reply(self, state: MoAState, reply: AIMessage | None) -> AIMessage | None:
        """Apply the aggregation to the model's reply, or choose without one.

        Before the call (``reply`` None), return the answer of a strategy that
        needs no model call here, or None to call the model.
        """
        if self.role != "aggregator":
            return reply
        strategy = self.config.aggregation
        if reply is None:
            prompt = state["messages"][-1].text
            references = self.references(state)
            return aggregation.select(
                strategy, prompt, references, check_code=self.config.check_code
            )
        return aggregation.chosen(reply, self.references(state)) if strategy == "rank" else reply

    def started(self, state: MoAState) -> float:
        writer = get_stream_writer()
        if self.role == "aggregator":
            writer(AggregatorStarted(event="aggregator_started", **self.metadata()))
        elif self.index == 0:
            agents = [a.name or "" for a in self.config.layers[self.layer - 1]]
            writer(LayerStarted(event="layer_started", moa_layer=self.layer, moa_agents=agents))
        if self.role == "proposer":
            writer(AgentStarted(event="agent_started", **self.metadata()))
        return time.perf_counter()

    def finished(
        self, state: MoAState, reply: AIMessage, started: float, cut: int = 0
    ) -> dict[str, Any]:
        usage = reply.usage_metadata or UsageMetadata(
            input_tokens=0, output_tokens=0, total_tokens=0
        )
        latency = time.perf_counter() - started
        get_stream_writer()(
            AgentFinished(
                event="agent_finished",
                **self.metadata(),
                latency_s=latency,
                input_tokens=usage["input_tokens"],
                output_tokens=usage["output_tokens"],
                references_cut_tokens=cut,
            )
        )
        if self.role == "aggregator":
            turn = user_turn(state["messages"])
            total = usage
            for proposal in state.get("proposals", []):
                if proposal.turn == turn:
                    total = add_usage(total, proposal.usage)
            return {"messages": [reply], "usage": total}
        return self.proposal(
            state,
            content=reply.text,
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            latency_s=latency,
            references_cut_tokens=cut,
        )

    def proposal(self, state: MoAState, **record: Any) -> dict[str, Any]:
        """Return the state update that records this proposer's outcome."""
        proposal = Proposal(
            turn=user_turn(state["messages"]),
            layer=self.layer,
            index=self.index,
            agent=self.name,
            model=self.spec.model_id,
            **record,
        )
        return {"proposals": [proposal]}

    def candidates(self) -> list[tuple[AgentSpec, BaseChatModel, CallPolicy]]:
        """Return the agent's model, then its fallbacks, in the order they are tried."""
        return [(self.spec, self.model, self.policy), *self.fallbacks]

    def fitted_prompt(
        self, state: MoAState, spec: AgentSpec, model: BaseChatModel
    ) -> tuple[list[AnyMessage], int]:
        """Return the prompt, references cut to the model's window, and the cut."""
        budget = input_budget(spec, model, self.config.sampling(spec, self.index)["max_tokens"])
        return fit_references(  # type: ignore[return-value]
            lambda refs: self.prompt(state, refs),  # type: ignore[arg-type,return-value]
            self.references(state),
            budget,
            agent=spec.name or "",
        )

    def check_layer(self, state: MoAState) -> None:
        """Stop the run when too few agents of the previous layer answered."""
        if self.layer == 1:
            return
        turn = user_turn(state["messages"])
        previous = [
            p for p in state.get("proposals", []) if p.turn == turn and p.layer == self.layer - 1
        ]
        answered = sum(p.ok for p in previous)
        if answered < self.config.min_proposals:
            failures = "; ".join(f"{p.agent}: {p.error}" for p in previous if not p.ok)
            raise LayerError(
                f"layer {self.layer - 1}: {answered} of {len(previous)} agents answered, "
                f"{self.config.min_proposals} needed; failed: {failures}"
            )

    def call(self, state: MoAState, deadline: float | None) -> tuple[AIMessage, int]:
        """Call the model (then each fallback) with retries; return reply and cut."""
        errors = []
        for spec, model, policy in self.candidates():
            messages, cut = self.fitted_prompt(state, spec, model)
            try:
                return call(model, messages, self.call_config(), policy, deadline=deadline), cut
            except StreamInterruptedError:
                raise  # shown tokens cannot be followed by a fallback's answer
            except ModelCallError as error:
                errors.append(f"{spec.model_id}: {error}")
        raise ModelCallError("; ".join(errors))

    async def acall(self, state: MoAState) -> tuple[AIMessage, int]:
        """Async :meth:`call`."""
        errors = []
        for spec, model, policy in self.candidates():
            messages, cut = self.fitted_prompt(state, spec, model)
            try:
                reply = await acall(model, messages, self.call_config(), policy)
                return reply, cut
            except StreamInterruptedError:
                raise  # shown tokens cannot be followed by a fallback's answer
            except ModelCallError as error:
                errors.append(f"{spec.model_id}: {error}")
        raise ModelCallError("; ".join(errors))

    def failed(self, state: MoAState, error: Exception, started: float) -> dict[str, Any]:
        """Record a proposer's failure as a proposal; an aggregator's ends the run."""
        if self.role == "aggregator":
            raise ModelCallError(f"aggregator '{self.name}' failed: {error}") from error
        get_stream_writer()(AgentFailed(event="agent_failed", **self.metadata(), error=str(error)))
        return self.proposal(
            state, content="", latency_s=time.perf_counter() - started, error=str(error)
        )

    def invoke(self, state: MoAState) -> dict[str, Any]:
        self.check_layer(state)
        started = self.started(state)
        cut = 0
        deadline = self.config.layer_deadline_s if self.role == "proposer" else None
        try:
            reply = self.strategy_reply(state, None)
            if reply is None:
                due = None if deadline is None else time.monotonic() + deadline
                answer, cut = self.call(state, due)
                reply = self.strategy_reply(state, answer)
        except ModelCallError as error:
            return self.failed(state, error, started)
        assert reply is not None
        return self.finished(state, reply, started, cut)

    async def ainvoke(self, state: MoAState) -> dict[str, Any]:
        self.check_layer(state)
        started = self.started(state)
        cut = 0
        deadline = self.config.layer_deadline_s if self.role == "proposer" else None
        try:
            async with asyncio.timeout(deadline):
                reply = self.strategy_reply(state, None)
                if reply is None:
                    answer, cut = await self.acall(state)
                    reply = self.strategy_reply(state, answer)
        except TimeoutError:
            error = ModelCallError(f"layer deadline of {deadline:g}s passed")
            return self.failed(state, error, started)
        except ModelCallError as error:
            return self.failed(state, error, started)
        assert reply is not None
        return self.finished(state, reply, started, cut)


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
    stream_proposers: bool = True,
    cache: BaseCache | None = None,
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
        stream_proposers: Whether proposers stream their tokens under
            ``stream_mode="messages"``. Callers that show only the final answer
            should pass False: proposers then answer in one response each, which
            saves a callback per token (the aggregator always streams).
        cache: A LangChain cache for the model calls that are repeatable: those at
            temperature 0 or with a seed. Graphs built with the same cache pay once
            for a call they share (same model, settings and messages), e.g. every
            configuration of an experiment that asks the same greedy question.
            Sampled calls without a seed, and model instances given in the config,
            are never cached, so identical sampled agents still differ.

    Returns:
        The uncompiled graph; compile it with any checkpointer.

    Raises:
        ConfigError: The config is invalid or a model cannot be resolved.

    Example:
        >>> graph = create_moa("together-moa-lite").compile()  # doctest: +SKIP
        >>> graph.invoke({"messages": [("user", "Why is the sky blue?")]})  # doctest: +SKIP
    """
    config = resolve_config(config)
    builder: StateGraph[MoAState, Any, MoAInput, MoAOutput] = _MoAGraph(
        MoAState, context_schema, input_schema=MoAInput, output_schema=MoAOutput
    )
    builder.graph_name = f"MoA {config.name}" if config.name else "MoA"  # type: ignore[attr-defined]
    agents = _agents(config, stream_proposers=stream_proposers, cache=cache)
    previous: list[str] = []
    for number in range(1, len(config.layers) + 2):  # the aggregator is the last "layer"
        layer = [agent for agent in agents if agent.layer == number]
        for agent in layer:
            _add_agent(builder, agent)
            if previous:
                builder.add_edge(previous, agent.node)
        names = [agent.node for agent in layer]
        if not previous:
            builder.add_conditional_edges(START, _start(names, agents), names)
        previous = names
    builder.add_edge(AGGREGATOR_NODE, END)
    return builder


class _MoAGraph(StateGraph[MoAState, Any, MoAInput, MoAOutput]):
    """A StateGraph whose compiled graph is named after its config.

    A trace's root run then reads ``MoA local`` rather than ``LangGraph``.
    """

    graph_name = "MoA"

    def compile(self, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        return super().compile(*args, name=name or self.graph_name, **kwargs)


def _model(
    config: MoAConfig, spec: AgentSpec, index: int, cache: BaseCache | None = None
) -> BaseChatModel:
    sampling = config.sampling(spec, index)
    model = resolve_model(spec, **sampling, timeout_s=call_policy(config, spec).first_token_s)
    repeatable = sampling["temperature"] == 0 or sampling["seed"] is not None
    # An instance from the config carries its own settings, so its calls may not repeat.
    if cache is not None and repeatable and not isinstance(spec.model, BaseChatModel):
        # A copy: resolved clients are shared between graphs that may not use a cache.
        model = model.model_copy(update={"cache": cache})
    return model


def _agent(
    config: MoAConfig,
    spec: AgentSpec,
    layer: int,
    index: int,
    *,
    stream_proposers: bool,
    cache: BaseCache | None,
) -> _Agent:
    fallbacks: tuple[tuple[AgentSpec, BaseChatModel, CallPolicy], ...] = ()
    aggregator = layer > len(config.layers)
    if aggregator:
        fallbacks = tuple(
            (f, _model(config, f, index, cache), call_policy(config, f))
            for f in config.aggregator_fallbacks
        )
    model = _model(config, spec, index, cache)
    policy = call_policy(config, spec)
    stream = aggregator or stream_proposers
    return _Agent(spec, model, layer, index, config, policy, fallbacks, stream)


def _agents(
    config: MoAConfig, *, stream_proposers: bool = True, cache: BaseCache | None = None
) -> list[_Agent]:
    layers = [*config.layers, [config.aggregator]]
    return [
        _agent(config, spec, number, index, stream_proposers=stream_proposers, cache=cache)
        for number, layer in enumerate(layers, 1)
        for index, spec in enumerate(layer)
    ]


_CONTENT_INPUTS = {
    "image": "image_inputs",
    "image_url": "image_inputs",
    "audio": "audio_inputs",
    "input_audio": "audio_inputs",
    "file": "pdf_inputs",
    "video": "video_inputs",
}


def _check_agents(agents: Sequence[_Agent], messages: Sequence[AnyMessage]) -> None:
    kinds = {
        block.get("type", "?")
        for message in messages
        if isinstance(message.content, list)
        for block in message.content
        if isinstance(block, dict) and block.get("type") not in ("text", "reasoning")
    }
    state: MoAState = {"messages": list(messages), "proposals": []}  # type: ignore[typeddict-item]
    for agent in agents:
        for spec, model, _ in agent.candidates():
            profile = getattr(model, "profile", None) or {}
            for kind in sorted(kinds):
                if not profile.get(_CONTENT_INPUTS.get(kind, f"{kind}_inputs")):
                    raise InputError(
                        f"the conversation has {kind} content, which agent "
                        f"'{spec.name}' ({spec.model_id}) cannot take"
                    )
            agent.fitted_prompt(state, spec, model)


def check_input(config: MoAConfig, messages: Sequence[AnyMessage]) -> None:
    """Check a conversation against a config without calling any model.

    The graph runs the same checks before its first layer; calling this first
    keeps bad input from being written to a checkpointer at all.

    Raises:
        InputError: The conversation is empty, its last message is not from the
            user or empty, it holds content (e.g. images) an agent cannot take, or
            it does not fit an agent's context window.
    """
    check_conversation(messages)
    _check_agents(_agents(config), messages)


def _add_agent(builder: StateGraph[Any, Any, Any, Any], agent: _Agent) -> None:
    metadata = {
        "role": agent.role,
        "layer": agent.layer,
        "agent": agent.name,
        "model": agent.spec.model_id,
        "preset": agent.config.name,
    }
    runnable = RunnableLambda(agent.invoke, agent.ainvoke, name=agent.node)
    builder.add_node(agent.node, runnable, metadata=metadata)


def _start(first_layer: list[str], agents: list[_Agent]) -> Any:
    def check_input(state: MoAState) -> list[str]:
        check_conversation(state["messages"])
        _check_agents(agents, state["messages"])
        return first_layer

    return check_input
