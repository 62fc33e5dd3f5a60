"""Plans: what each agent slot of a MoA does in one run.

A config says what a MoA is; a run may change some of it (:class:`RunOptions`: the
depth, the sampling, another preset of the same shape, tools). The planner
(:mod:`moa_graph.graph.planner`) turns the two into a frozen :class:`MoAPlan`, one
:class:`AgentPlan` per slot, with every agent's model resolved, its sampling, call
policy, fallbacks, node name and trace metadata, and the run's early exit policy
(:class:`ExitPolicy`). Nodes, checks, input checks and the call layer receive plans,
never the config.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.constants import TAG_NOSTREAM

from moa_graph.calls.call import CallPolicy
from moa_graph.calls.tool_calls import ToolSet
from moa_graph.config.model import AgentSpec, Aggregation
from moa_graph.graph.frozen import freeze
from moa_graph.graph.state import AgentInfo

AGGREGATOR_NODE = "aggregator"
"""Name of the aggregator's node."""

AGGREGATOR_TAG = "moa:aggregator"
"""Tag on the aggregator's model call: keep ``stream_mode="messages"`` chunks with it
to get only the final answer."""

PROPOSER_TAG = "moa:proposer"
"""Tag on every proposer's model call."""

Slot = tuple[int, int]
"""Where an agent sits: ``(layer, index)``, layers from 1; the aggregator's layer is 0."""

AGGREGATOR_SLOT: Slot = (0, 0)


def proposer_node(layer: int, agent: str) -> str:
    """Return the node name of a proposer, e.g. ``layer1/Qwen1.5-72B-Chat``."""
    return f"layer{layer}/{agent}"


@dataclass(frozen=True)
class RunOptions:
    """What one run may change of a graph's config.

    ``temperature`` and ``max_tokens`` mean the same wherever a run sets them (the
    server's request, the Studio form): they are the defaults of the agents in
    ``sampling``'s scope, as the config's own ``temperature`` and ``max_tokens`` are;
    an agent that sets its own (a greedy proposer, say) keeps it.

    Attributes:
        preset: Call this preset's models (same layer widths); None: the graph's own.
        layers: Proposer layers to run (later ones pass through); None: the config's.
        temperature: The default sampling temperature of the agents in scope.
        max_tokens: The default completion budget of the agents in scope.
        sampling: Which agents ``temperature`` and ``max_tokens`` apply to.
        show_proposals: Whether proposers stream their tokens; None: the graph's choice.
        tools: The tools the aggregator may call, as OpenAI tool schemas
            (proposers see their descriptions); empty: no tools.
        tool_choice: The aggregator's OpenAI ``tool_choice`` (a string or an
            object), when tools are given.
        parallel_tool_calls: Whether the aggregator may call several tools at once.
        response_format: The aggregator's OpenAI ``response_format``
            (``json_object`` or ``json_schema``); the strategy is then ``synthesize``.

    Options are frozen and hashable: the JSON objects given (plain dicts) are kept
    as :class:`~moa_graph.graph.frozen.FrozenDict` (see :mod:`moa_graph.graph.frozen`).
    """

    preset: str | None = None
    layers: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    sampling: Literal["aggregator", "all"] = "all"
    show_proposals: bool | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        # Most runs bind nothing: their options are made on every node's way to its plan.
        if self.tools != () or self.tool_choice is not None or self.response_format is not None:
            for name in ("tools", "tool_choice", "response_format"):
                object.__setattr__(self, name, freeze(getattr(self, name)))


@dataclass(frozen=True)
class Candidate:
    """A model an agent may call (its own, then each fallback), ready to call."""

    spec: AgentSpec
    model: BaseChatModel
    policy: CallPolicy
    prompt_budget: int | None  # prompt tokens the model takes; None when unknown
    bound: Runnable[Any, Any] | None = None  # the model bound to the run's tools

    @property
    def runnable(self) -> Runnable[Any, Any]:
        """What a call invokes: the model, bound to the run's tools when it has any."""
        return self.bound or self.model


@dataclass(frozen=True)
class AgentPlan:
    """What one agent slot does in a run.

    Attributes:
        role: ``proposer`` or ``aggregator``.
        layer: The proposer layer from 1; the aggregator's is the last layer plus one.
        index: The agent's position in its layer.
        name: The agent's name.
        node: The node that runs it.
        candidates: Its model, then its fallbacks, in the order they are tried.
        strategy: How it combines references (``synthesize`` for every proposer).
        aggregate_prompt: The text put before the references.
        check_code: Whether ``consensus`` and ``auto`` run proposed code.
        min_proposals: Agents of the previous layer that must have answered.
        deadline_s: Seconds the agent may take in all (proposers with a layer deadline).
        stream: Whether its tokens reach a caller streaming ``messages``.
        peers: The names of its layer's agents, in order.
        preset: The config's name, for traces.
        tools: The run's tools (OpenAI schemas): the aggregator is bound to them,
            proposers are told of them.
        tool_set: The tools an answer may call (the run's ``tool_choice`` and
            ``parallel_tool_calls`` applied); None when it may call none.
    """

    role: Literal["proposer", "aggregator"]
    layer: int
    index: int
    name: str
    node: str
    candidates: tuple[Candidate, ...]
    strategy: Aggregation
    aggregate_prompt: str
    check_code: bool
    min_proposals: int
    deadline_s: float | None
    stream: bool
    peers: tuple[str, ...]
    preset: str | None
    tools: tuple[dict[str, Any], ...] = ()
    tool_set: ToolSet | None = None

    @property
    def spec(self) -> AgentSpec:
        """The agent's own spec (its first candidate's)."""
        return self.candidates[0].spec

    def info(self) -> AgentInfo:
        """Return who this agent is, for events and call metadata."""
        return AgentInfo(
            moa_role=self.role,
            moa_layer=self.layer,
            moa_agent=self.name,
            moa_model=self.spec.model_id,
            moa_preset=self.preset,
        )

    def call_config(self) -> RunnableConfig:
        """Return the run name, tags and metadata of the agent's model calls."""
        tag = AGGREGATOR_TAG if self.role == "aggregator" else PROPOSER_TAG
        tags = ["moa", tag, f"moa:layer:{self.layer}"]
        return {
            "run_name": self.name,
            "tags": tags if self.stream else [*tags, TAG_NOSTREAM],
            "metadata": dict(self.info()),
        }


@dataclass(frozen=True)
class ExitPolicy:
    """When a run's proposals end it early: a config's ``early_exit``, for one run.

    Attributes:
        agree: What agreeing means: ``answer``, ``similar`` or ``auto`` (see
            :class:`~moa_graph.config.model.EarlyExit`).
        quorum: The share of a layer's proposals so far that must agree.
        min_similarity: How alike two texts must be to agree (0 to 1).
        stages: The sizes of a layer's first stages; the rest is the last stage.
        stop_unchanged: Whether a layer that kept the previous layer's answer stops
            the stack (the aggregator then runs on it).
        check_code: Whether code agrees by passing the prompt's examples (the
            config's ``check_code``; never with tools, where only calls agree).
        tool_calls: With tools bound, ``agree`` (equal calls end a stage) or
            ``first`` (the first proposal alone decides: its calls end the run, its
            text goes to the aggregator).
    """

    agree: Literal["answer", "similar", "auto"]
    quorum: float
    min_similarity: float
    stages: tuple[int, ...]
    stop_unchanged: bool
    check_code: bool
    tool_calls: Literal["agree", "first"] = "agree"

    def first_decides(self, tools: object) -> bool:
        """Whether the first proposal alone decides a run that binds ``tools``."""
        return self.tool_calls == "first" and tools is not None


@dataclass(frozen=True)
class MoAPlan:
    """Every agent slot of one run: proposer layers, then the aggregator.

    Attributes:
        layers: The proposer layers of the run, each its agents in order.
        aggregator: The aggregator.
        exit: When the run's proposals end it early; None: they never do.
    """

    layers: tuple[tuple[AgentPlan, ...], ...]
    aggregator: AgentPlan
    exit: ExitPolicy | None = None

    def agents(self) -> Iterator[AgentPlan]:
        """Yield every agent, layer by layer, the aggregator last."""
        for layer in self.layers:
            yield from layer
        yield self.aggregator

    def agent(self, slot: Slot) -> AgentPlan | None:
        """Return the agent at ``slot``, or None for a slot this run skips."""
        layer, index = slot
        if layer == 0:
            return self.aggregator
        tools = self.aggregator.tool_set
        if layer == 1 and index > 0 and self.exit and self.exit.first_decides(tools):
            return None  # the first proposer decides alone (``tool_calls: first``)
        return self.layers[layer - 1][index] if layer <= len(self.layers) else None
