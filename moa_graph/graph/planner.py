"""The planner: a config and a run's options to a :class:`~moa_graph.graph.plan.MoAPlan`.

The one place where each agent's effective settings are worked out: its sampling
(the config's defaults, the agent's own, the run's), call policy, client, fallbacks
and tools.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_openai.chat_models.base import BaseChatOpenAI

from moa_graph.calls.budget import prompt_budget
from moa_graph.calls.call import CallPolicy, rate_limiter
from moa_graph.calls.tool_calls import ToolSet
from moa_graph.config.model import AgentSpec, Aggregation, CallSettings, MoAConfig
from moa_graph.errors import InputError
from moa_graph.graph.clients import resolve_model
from moa_graph.graph.frozen import thaw
from moa_graph.graph.plan import (
    AGGREGATOR_NODE,
    AgentPlan,
    Candidate,
    ExitPolicy,
    MoAPlan,
    RunOptions,
    proposer_node,
)
from moa_graph.strategies.aggregation import STRATEGIES

_CALL_VOTES = frozenset({"vote", "consensus", "auto"})
"""Strategies that vote on proposed tool calls (the others leave calls to the aggregator)."""

_PLANS_KEPT = 32  # distinct run options whose plans a graph keeps


def call_policy(settings: CallSettings, agent: AgentSpec) -> CallPolicy:
    """Return how the calls of ``agent`` are made: ``settings`` with the agent's own."""
    rate = settings.rate_limits.get(agent.provider or "")
    limiter = rate_limiter(agent.provider or "", rate) if rate else None
    return CallPolicy(settings.for_agent(agent), limiter)


def bound(candidate: Candidate, tools: tuple[dict[str, Any], ...], run: RunOptions) -> Candidate:
    """Return an aggregator's candidate bound to the run's tools and answer format.

    Raises:
        InputError: The model cannot call tools, or cannot take ``response_format``
            (only OpenAI-compatible clients can); names the agent.
    """
    where = f"agent '{candidate.spec.name}' ({candidate.spec.model_id})"
    runnable: Runnable[Any, Any] = candidate.model
    if tools:
        options: dict[str, Any] = {}
        if run.tool_choice is not None:
            options["tool_choice"] = thaw(run.tool_choice)  # OpenAI's may be an object
        if run.parallel_tool_calls is not None:
            options["parallel_tool_calls"] = run.parallel_tool_calls
        try:
            runnable = candidate.model.bind_tools(list(tools), **options)
        except NotImplementedError:
            raise InputError(f"{where} cannot call tools") from None
    if run.response_format is not None:
        if not isinstance(candidate.model, BaseChatOpenAI):
            raise InputError(f"{where} cannot take response_format: it is not OpenAI-compatible")
        runnable = runnable.bind(response_format=thaw(run.response_format))
    return dataclasses.replace(candidate, bound=runnable)


def tool_set_of(run: RunOptions) -> ToolSet | None:
    """Return the tools a run's answer may call, or None when it binds none (or forbids calls)."""
    if not run.tools:
        return None
    return ToolSet.of(thaw(run.tools), thaw(run.tool_choice), run.parallel_tool_calls)


def exit_policy(config: MoAConfig, run: RunOptions) -> ExitPolicy | None:
    """Return when a run of ``config`` with ``run``'s options may end early, or None.

    An answer that must follow a format is the aggregator's to write, and so is any
    answer when the run binds tools but allows no call (``tool_choice`` ``none``);
    with tools, only equal proposed calls end the run early.
    """
    settings = config.early_exit
    tools = tool_set_of(run)
    if settings is None or run.response_format or (run.tools and tools is None):
        return None
    return ExitPolicy(
        agree=settings.agree,
        quorum=settings.quorum,
        min_similarity=settings.min_similarity,
        stages=tuple(settings.stages),
        stop_unchanged=settings.stop_unchanged,
        check_code=config.check_code and tools is None,
        tool_calls=settings.tool_calls,
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

    def _run_config(self, options: RunOptions) -> MoAConfig:
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
        return self._plan_of(self._run_config(options), options)

    def _plan_of(self, config: MoAConfig, options: RunOptions) -> MoAPlan:
        stream = self.stream_proposers if options.show_proposals is None else options.show_proposals
        layers = tuple(
            tuple(
                self._agent(config, options, layer, number, index, stream=stream)
                for index in range(len(layer))
            )
            for number, layer in enumerate(config.layers, 1)
        )
        # Its tokens stream to a caller only where they are the answer's: a ranker's
        # reply names the answer, so it is never shown (and a broken one is retried).
        shown = STRATEGIES[config.aggregation].reply_is_answer
        aggregator = self._agent(
            config, options, [config.aggregator], len(config.layers) + 1, 0, stream=shown
        )
        return MoAPlan(layers, aggregator, exit_policy(config, options))

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
        specs = [layer[index], *(config.calls.aggregator_fallbacks if aggregator else ())]
        in_scope = aggregator or options.sampling == "all"
        candidates = tuple(
            self._candidate(config, spec, index, options if in_scope else None) for spec in specs
        )
        tools = tuple(thaw(options.tools))
        bound_run = bool(tools or options.response_format)
        if aggregator and bound_run:
            candidates = tuple(bound(c, tools, options) for c in candidates)
        tool_set = tool_set_of(options)
        # Only a model can answer in a format; proposed calls can be voted on.
        selects = not bound_run or (
            not options.response_format and config.aggregation in _CALL_VOTES
        )
        strategy: Aggregation = config.aggregation if aggregator and selects else "synthesize"
        name = layer[index].name or ""
        return AgentPlan(
            role="aggregator" if aggregator else "proposer",
            layer=number,
            index=index,
            name=name,
            node=AGGREGATOR_NODE if aggregator else proposer_node(number, name),
            candidates=candidates,
            strategy=strategy,
            aggregate_prompt=config.aggregate_prompt,
            check_code=config.check_code,
            min_proposals=config.calls.min_proposals,
            deadline_s=None if aggregator else config.calls.layer_deadline_s,
            stream=stream,
            peers=tuple(agent.name or "" for agent in layer),
            preset=config.name,
            tools=tools,
            tool_set=tool_set,
        )

    def _candidate(
        self, config: MoAConfig, spec: AgentSpec, index: int, options: RunOptions | None
    ) -> Candidate:
        if options is not None:  # the run's settings are the defaults of the agents in scope
            run = {"temperature": options.temperature, "max_tokens": options.max_tokens}
            config = config.model_copy(update={k: v for k, v in run.items() if v is not None})
        sampling = config.sampling(spec, index)
        policy = call_policy(config.calls, spec)
        model = resolve_model(spec, **sampling, timeout_s=policy.settings.first_token_timeout_s)
        repeatable = sampling["temperature"] == 0 or sampling["seed"] is not None
        # An instance from the config carries its own settings, so its calls may not repeat.
        if self.cache is not None and repeatable and not isinstance(spec.model, BaseChatModel):
            # A copy: resolved clients are shared between graphs that may not use a cache.
            model = model.model_copy(update={"cache": self.cache})
        return Candidate(spec, model, policy, prompt_budget(spec, model, sampling["max_tokens"]))
