"""``moa serve``'s served models: configs by name, each with its compiled graph."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from moa_graph.config.files import load_config
from moa_graph.config.model import MoAConfig
from moa_graph.config.presets import load_preset
from moa_graph.errors import ConfigError
from moa_graph.graph.build import build_graph, run_options
from moa_graph.graph.plan import RunOptions
from moa_graph.graph.planner import Planner


def served_configs(
    presets: Iterable[str] = (), config_files: Iterable[str | Path] = ()
) -> dict[str, MoAConfig]:
    """Name the configs to serve: a preset by its name, a file by its ``name`` or stem.

    Raises:
        ConfigError: A preset or file is unknown or invalid, or two share a name.
    """
    named: list[tuple[str, MoAConfig]] = [(name, load_preset(name)) for name in presets]
    for path in config_files:
        config = load_config(path)
        named.append((config.name or Path(path).stem, config))
    served: dict[str, MoAConfig] = {}
    for name, config in named:
        if name in served:
            raise ConfigError(f"two served models are named '{name}'")
        served[name] = config
    if not served:
        raise ConfigError("nothing to serve: give --preset or --config")
    return served


@dataclass
class ServedModel:
    """A served config and its compiled graph.

    One graph serves every request: a request's sampling, tools and answer format
    reach it as the run's :class:`~moa_graph.graph.plan.RunOptions` (see :meth:`options`),
    which :meth:`check` plans before the run, on the graph's own planner.
    """

    name: str
    config: MoAConfig
    checkpointer: BaseCheckpointSaver[Any] | None
    created: int = field(default_factory=lambda: int(time.time()))
    planner: Planner = field(init=False)
    graph: CompiledStateGraph[Any, Any, Any, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.planner = Planner(self.config, stream_proposers=False)
        builder = build_graph(self.planner, run_options, context_schema=RunOptions)
        self.graph = builder.compile(checkpointer=self.checkpointer, name=self.name)

    def check(self, options: RunOptions) -> None:
        """Plan a run with ``options`` before it starts, as the graph will.

        Raises:
            InputError: An aggregator (or one of its fallbacks) cannot call tools or
                take the ``response_format``; names the agent.
        """
        self.planner.plan(options)

    @staticmethod
    def options(
        temperature: float | None, max_tokens: int | None, scope: Literal["aggregator", "all"]
    ) -> RunOptions:
        """Return the run options of a request's sampling.

        What the request sets replaces the settings of the agents in ``scope``.
        """
        return RunOptions(temperature=temperature, max_tokens=max_tokens, sampling=scope)
