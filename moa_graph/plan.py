"""Plans: what each agent slot of a MoA does in one run, worked out in one place.

A config says what a MoA is; a run may change some of it (:class:`RunOptions`: the
depth, the sampling, another preset of the same shape). :class:`Planner` turns the
two into a frozen :class:`MoAPlan`, one :class:`AgentPlan` per slot, with every
agent's model resolved, its sampling, call policy, fallbacks, node name and trace
metadata. Nodes, input checks and the call layer receive plans, never the config.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.constants import TAG_NOSTREAM

from moa_graph.aggregation import Aggregation
from moa_graph.config import AgentSpec, MoAConfig
from moa_graph.errors import InputError
from moa_graph.models import resolve_model
from moa_graph.reliability import CallPolicy, rate_limiter
from moa_graph.state import AgentInfo

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

_PLANS_KEPT = 32  # distinct run options whose plans a graph keeps


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
    """

    preset: str | None = None
    layers: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    sampling: Literal["aggregator", "all"] = "all"
    show_proposals: bool | None = None


@dataclass(frozen=True)
class Candidate:
    """A model an agent may call (its own, then each fallback), ready to call."""

    spec: AgentSpec
    model: BaseChatModel
    policy: CallPolicy
    prompt_budget: int | None  # prompt tokens the model takes; None when unknown


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
class MoAPlan:
    """Every agent slot of one run: proposer layers, then the aggregator."""

    layers: tuple[tuple[AgentPlan, ...], ...]
    aggregator: AgentPlan

    def agents(self) -> Iterator[AgentPlan]:
        """Yield every agent, layer by layer, the aggregator last."""
        for layer in self.layers:
            yield from layer
        yield self.aggregator

    def agent(self, slot: Slot) -> AgentPlan | None:
        """Return the agent at ``slot``, or None for a layer this run skips."""
        layer, index = slot
        if layer == 0:
            return self.aggregator
        return self.layers[layer - 1][index] if layer <= len(self.layers) else None


def call_policy(config: MoAConfig, agent: AgentSpec) -> CallPolicy:
    """Return how the calls of one agent of ``config`` are made."""
    rate = config.rate_limits.get(agent.provider or "")
    return CallPolicy(
        timeout_s=agent.timeout_s or config.timeout_s,
        first_token_s=config.first_token_timeout_s,
        idle_s=config.idle_timeout_s,
        max_retries=config.max_retries if agent.max_retries is None else agent.max_retries,
        backoff_s=config.backoff_s,
        max_backoff_s=config.max_backoff_s,
        max_retry_after_s=config.max_retry_after_s,
        rate_limiter=rate_limiter(agent.provider or "", rate) if rate else None,
    )


def with_depth(config: MoAConfig, depth: int) -> MoAConfig:
    """Return ``config`` with ``depth`` layers: cut, or its last layer repeated."""
    layers = [config.layers[min(i, len(config.layers) - 1)] for i in range(depth)]
    return config.model_copy(update={"layers": layers})


class Planner:
    """Plans the runs of one graph: its config's own, or what a run's options ask for.

    Plans are kept per distinct options (the most recent 32), so a node resolves
    nothing on the way to its call.

    Args:
        config: The graph's config.
        depth: Proposer layers of the graph (the config's last layer repeated, as
            the paper stacks the same proposers); None: the config's own.
        stream_proposers: Whether proposers stream their tokens unless a run says.
        cache: A LangChain cache for the repeatable calls (see :func:`create_moa`).
        load: Turns a run's preset name into a config; None: runs cannot switch.
    """

    def __init__(
        self,
        config: MoAConfig,
        *,
        depth: int | None = None,
        stream_proposers: bool = True,
        cache: BaseCache | None = None,
        load: Callable[[str], MoAConfig] | None = None,
    ) -> None:
        self.config = config
        self.slots = with_depth(config, depth or len(config.layers))
        self.stream_proposers = stream_proposers
        self.cache = cache
        self.load = load
        self._plans: OrderedDict[RunOptions, MoAPlan] = OrderedDict()
        self._lock = threading.Lock()

    def plan(self, options: RunOptions | None = None) -> MoAPlan:
        """Return the plan of a run with ``options``.

        Raises:
            InputError: More layers than the graph has, or a preset of another shape.
            ConfigError: The preset is unknown or a model cannot be resolved.
        """
        options = options or RunOptions()
        with self._lock:
            if options in self._plans:
                self._plans.move_to_end(options)
                return self._plans[options]
        plan = self._build(options)
        with self._lock:
            self._plans[options] = plan
            while len(self._plans) > _PLANS_KEPT:
                self._plans.popitem(last=False)
        return plan

    def slots_plan(self) -> MoAPlan:
        """Return the plan of every slot the graph has: its nodes, all layers deep."""
        return self._plan_of(self.slots, RunOptions())

    def run_config(self, options: RunOptions) -> MoAConfig:
        """Return the config a run with ``options`` follows, checked against the slots."""
        base = self.config
        if options.preset not in (None, self.config.name):
            if self.load is None:
                raise InputError("this graph cannot switch presets")
            base = self.load(options.preset or "")
        depth = options.layers or len(base.layers)
        if depth > len(self.slots.layers):
            raise InputError(
                f"layers={depth}: this graph has at most {len(self.slots.layers)} layers"
            )
        config = with_depth(base, depth)
        for number, (layer, slots) in enumerate(
            zip(config.layers, self.slots.layers[:depth], strict=True), 1
        ):
            if len(layer) != len(slots):
                raise InputError(
                    f"preset '{options.preset}' has {len(layer)} agents in layer {number}, "
                    f"this graph {len(slots)}: serve a graph built from that preset instead"
                )
        return config

    def _build(self, options: RunOptions) -> MoAPlan:
        return self._plan_of(self.run_config(options), options)

    def _plan_of(self, config: MoAConfig, options: RunOptions) -> MoAPlan:
        stream = self.stream_proposers if options.show_proposals is None else options.show_proposals
        layers = tuple(
            tuple(
                self._agent(config, options, layer, number, index, stream=stream)
                for index in range(len(layer))
            )
            for number, layer in enumerate(config.layers, 1)
        )
        aggregator = self._agent(
            config, options, [config.aggregator], len(config.layers) + 1, 0, stream=True
        )
        return MoAPlan(layers, aggregator)

    def _agent(
        self,
        config: MoAConfig,
        options: RunOptions,
        layer: list[AgentSpec],
        number: int,
        index: int,
        *,
        stream: bool,
    ) -> AgentPlan:
        aggregator = number > len(config.layers)
        specs = [layer[index], *(config.aggregator_fallbacks if aggregator else ())]
        in_scope = aggregator or options.sampling == "all"
        candidates = tuple(
            self._candidate(config, spec, index, options if in_scope else None) for spec in specs
        )
        name = layer[index].name or ""
        return AgentPlan(
            role="aggregator" if aggregator else "proposer",
            layer=number,
            index=index,
            name=name,
            node=AGGREGATOR_NODE if aggregator else proposer_node(number, name),
            candidates=candidates,
            strategy=config.aggregation if aggregator else "synthesize",
            aggregate_prompt=config.aggregate_prompt,
            check_code=config.check_code,
            min_proposals=config.min_proposals,
            deadline_s=None if aggregator else config.layer_deadline_s,
            stream=stream,
            peers=tuple(agent.name or "" for agent in layer),
            preset=config.name,
        )

    def _candidate(
        self, config: MoAConfig, spec: AgentSpec, index: int, options: RunOptions | None
    ) -> Candidate:
        if options is not None:  # the run's settings are the defaults of the agents in scope
            run = {"temperature": options.temperature, "max_tokens": options.max_tokens}
            config = config.model_copy(update={k: v for k, v in run.items() if v is not None})
        sampling = config.sampling(spec, index)
        policy = call_policy(config, spec)
        model = resolve_model(spec, **sampling, timeout_s=policy.first_token_s)
        repeatable = sampling["temperature"] == 0 or sampling["seed"] is not None
        # An instance from the config carries its own settings, so its calls may not repeat.
        if self.cache is not None and repeatable and not isinstance(spec.model, BaseChatModel):
            # A copy: resolved clients are shared between graphs that may not use a cache.
            model = model.model_copy(update={"cache": self.cache})
        return Candidate(spec, model, policy, _prompt_budget(spec, model, sampling["max_tokens"]))


def _prompt_budget(spec: AgentSpec, model: BaseChatModel, max_tokens: int) -> int | None:
    """Return the prompt tokens an agent takes, or None when its window is unknown.

    The agent's ``context_window`` (prompt and completion) wins; otherwise the
    model's profile (``max_input_tokens``) is used when LangChain knows it.
    """
    if spec.context_window:
        return spec.context_window - max_tokens
    profile = getattr(model, "profile", None) or {}
    window = profile.get("max_input_tokens")
    return window if isinstance(window, int) else None
