"""``moa serve``'s served models: configs by name, each with its compiled graph."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from moa_graph.config.model import MoAConfig
from moa_graph.config.resolve import named_configs
from moa_graph.errors import ConfigError
from moa_graph.graph.clients import start_local_models
from moa_graph.graph.plan import RunOptions
from moa_graph.graph.planner import Planner
from moa_graph.run.factory import create_moa


def served_configs(
    presets: Iterable[str] = (), config_files: Iterable[str | Path] = ()
) -> dict[str, MoAConfig]:
    """Name the configs to serve: a preset by its name, a file by its ``name`` or stem.

    Raises:
        ConfigError: A preset or file is unknown or invalid, or two share a name.
    """
    served: dict[str, MoAConfig] = {}
    for name, config in named_configs(presets, config_files):
        if name in served:
            raise ConfigError(f"two served models are named '{name}'")
        served[name] = config
    if not served:
        raise ConfigError("nothing to serve: give --preset or --config")
    return served


@dataclass
class ServedModel:
    """A served config and its compiled graph.

    One graph, built by :func:`~moa_graph.run.factory.create_moa`, serves every
    request: a request's sampling, tools and answer format reach it as the run's
    :class:`~moa_graph.graph.plan.RunOptions`
    (:meth:`~moa_graph.server.wire.ChatCompletionRequest.run_options`), which
    :meth:`check` plans before the run, as the graph will.
    """

    name: str
    config: MoAConfig
    checkpointer: BaseCheckpointSaver[Any] | None
    created: int = field(default_factory=lambda: int(time.time()))
    planner: Planner = field(init=False)
    graph: CompiledStateGraph[Any, Any, Any, Any] = field(init=False)

    def __post_init__(self) -> None:
        builder = create_moa(self.config, context_schema=RunOptions, stream_proposers=False)
        self.graph = builder.compile(checkpointer=self.checkpointer, name=self.name)
        # Plans as the graph's own planner does (same config and settings); each keeps
        # its plans per distinct options, so a request's tools are bound once in each.
        self.planner = Planner(self.config, stream_proposers=False)
        # A server starts its local models with it, as it did before graphs loaded
        # them lazily: missing weights fail `moa serve` at once, not its first request.
        start_local_models(self.planner.plan(RunOptions()))

    def check(self, options: RunOptions) -> None:
        """Plan a run with ``options`` before it starts, as the graph will.

        Raises:
            InputError: An aggregator (or one of its fallbacks) cannot call tools or
                take the ``response_format``; names the agent.
        """
        self.planner.plan(options)
