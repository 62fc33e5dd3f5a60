"""moa-graph: Mixture-of-Agents as a LangGraph graph.

Example:
    >>> from moa_graph import create_moa
    >>> graph = create_moa("local-tiny").compile()  # doctest: +SKIP
    >>> graph.invoke({"messages": [("user", "Name three primes.")]})  # doctest: +SKIP

Names are imported on first use, so the command line starts without loading
LangGraph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moa_graph._lazy import lazy_exports

if TYPE_CHECKING:
    from moa_graph.config import AgentSpec, EarlyExit, MoAConfig
    from moa_graph.config_files import load_config, save_config
    from moa_graph.errors import ConfigError, InputError, MissingAPIKeyError, MoAError
    from moa_graph.factory import create_moa
    from moa_graph.graph import AGGREGATOR_NODE, AGGREGATOR_TAG, PROPOSER_TAG
    from moa_graph.presets import list_presets, load_preset
    from moa_graph.prompts import AGGREGATE_PROMPT
    from moa_graph.state import MoAInput, MoAOutput, MoAState, ProgressEvent, Proposal, RunExit

_EXPORTS = {
    "ChatMoA": "chat_model",
    "AgentSpec": "config",
    "EarlyExit": "config",
    "MoAConfig": "config",
    "load_config": "config_files",
    "save_config": "config_files",
    "ConfigError": "errors",
    "InputError": "errors",
    "MissingAPIKeyError": "errors",
    "MoAError": "errors",
    "AGGREGATOR_NODE": "graph",
    "AGGREGATOR_TAG": "graph",
    "PROPOSER_TAG": "graph",
    "create_moa": "factory",
    "list_presets": "presets",
    "load_preset": "presets",
    "AGGREGATE_PROMPT": "prompts",
    "MoAInput": "state",
    "MoAOutput": "state",
    "MoAState": "state",
    "ProgressEvent": "state",
    "Proposal": "state",
    "RunExit": "state",
}

__all__ = [
    "AGGREGATE_PROMPT",
    "AGGREGATOR_NODE",
    "AGGREGATOR_TAG",
    "PROPOSER_TAG",
    "AgentSpec",
    "ChatMoA",
    "ConfigError",
    "EarlyExit",
    "InputError",
    "MissingAPIKeyError",
    "MoAConfig",
    "MoAError",
    "MoAInput",
    "MoAOutput",
    "MoAState",
    "ProgressEvent",
    "Proposal",
    "RunExit",
    "create_moa",
    "list_presets",
    "load_config",
    "load_preset",
    "save_config",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
