"""moa-graph: Mixture-of-Agents as a LangGraph graph.

Example:
    >>> from moa_graph import create_moa
    >>> graph = create_moa("local-tiny").compile()  # doctest: +SKIP
    >>> graph.invoke({"messages": [("user", "Name three primes.")]})  # doctest: +SKIP

The public API is the table ``_EXPORTS`` below: each name and the module that defines
it. Names are imported on first use, so the command line starts without LangGraph.
The README, the notebooks and the example graphs (``graphs/``) import only these
names (``tests/test_public_api.py`` checks it); the evaluation harness has its own,
:mod:`moa_graph.eval`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AGGREGATE_PROMPT": "config.aggregate_prompt",
    "AgentSpec": "config.agents",
    "EarlyExit": "config.model",
    "MoAConfig": "config.model",
    "load_config": "config.files",
    "save_config": "config.files",
    "list_presets": "config.presets",
    "load_preset": "config.presets",
    "ConfigError": "errors",
    "InputError": "errors",
    "MissingAPIKeyError": "errors",
    "MoAError": "errors",
    "AGGREGATOR_NODE": "graph.plan",
    "AGGREGATOR_TAG": "graph.plan",
    "PROPOSER_TAG": "graph.plan",
    "check_input": "graph.build",
    "check_conversation": "graph.input_checks",
    "resolve_model": "graph.clients",
    "MoAInput": "graph.state",
    "MoAOutput": "graph.state",
    "MoAState": "graph.state",
    "ProgressEvent": "graph.state",
    "Proposal": "graph.state",
    "RunExit": "graph.state",
    "create_moa": "run.factory",
    "MoAContext": "run.studio",
    "stream_moa": "run.streaming",
    "Progress": "run.streaming",
    "Token": "run.streaming",
    "Finished": "run.streaming",
    "open_checkpointer": "run.checkpoints",
    "thread_config": "run.checkpoints",
    "ChatMoA": "run.chat_model",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # the same names, for type checkers; tests/test_public_api.py compares them
    from moa_graph.config.agents import AgentSpec as AgentSpec
    from moa_graph.config.aggregate_prompt import AGGREGATE_PROMPT as AGGREGATE_PROMPT
    from moa_graph.config.files import load_config as load_config
    from moa_graph.config.files import save_config as save_config
    from moa_graph.config.model import EarlyExit as EarlyExit
    from moa_graph.config.model import MoAConfig as MoAConfig
    from moa_graph.config.presets import list_presets as list_presets
    from moa_graph.config.presets import load_preset as load_preset
    from moa_graph.errors import ConfigError as ConfigError
    from moa_graph.errors import InputError as InputError
    from moa_graph.errors import MissingAPIKeyError as MissingAPIKeyError
    from moa_graph.errors import MoAError as MoAError
    from moa_graph.graph.build import check_input as check_input
    from moa_graph.graph.clients import resolve_model as resolve_model
    from moa_graph.graph.input_checks import check_conversation as check_conversation
    from moa_graph.graph.plan import AGGREGATOR_NODE as AGGREGATOR_NODE
    from moa_graph.graph.plan import AGGREGATOR_TAG as AGGREGATOR_TAG
    from moa_graph.graph.plan import PROPOSER_TAG as PROPOSER_TAG
    from moa_graph.graph.state import MoAInput as MoAInput
    from moa_graph.graph.state import MoAOutput as MoAOutput
    from moa_graph.graph.state import MoAState as MoAState
    from moa_graph.graph.state import ProgressEvent as ProgressEvent
    from moa_graph.graph.state import Proposal as Proposal
    from moa_graph.graph.state import RunExit as RunExit
    from moa_graph.run.chat_model import ChatMoA as ChatMoA
    from moa_graph.run.checkpoints import open_checkpointer as open_checkpointer
    from moa_graph.run.checkpoints import thread_config as thread_config
    from moa_graph.run.factory import create_moa as create_moa
    from moa_graph.run.streaming import Finished as Finished
    from moa_graph.run.streaming import Progress as Progress
    from moa_graph.run.streaming import Token as Token
    from moa_graph.run.streaming import stream_moa as stream_moa
    from moa_graph.run.studio import MoAContext as MoAContext


def _lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` (PEP 562) that imports each name from its module.

    Args:
        package: The package's ``__name__``.
        exports: Each exported name and the submodule (relative) that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        return getattr(import_module(f"{package}.{module}"), name)

    return __getattr__


__getattr__ = _lazy_exports(__name__, _EXPORTS)
