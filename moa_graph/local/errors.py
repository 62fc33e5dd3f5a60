"""Errors of the local runtime.

Each carries a one-line message that says what to do, so the command line can print
it as is. All derive from :class:`ValueError` (through :class:`LocalModelError`) and
from moa-graph's :class:`~moa_graph.errors.MoAError`.
"""

from __future__ import annotations

from moa_graph.errors import MoAError


class LocalModelError(MoAError, ValueError):
    """Base class of every error of the local runtime."""


class UnknownModelError(LocalModelError):
    """No local model has that name."""


class WeightsNotInstalledError(LocalModelError):
    """The model's GGUF file is not in the models directory."""


class ChecksumMismatchError(LocalModelError):
    """A model file is corrupted or truncated; it is never loaded."""


class InstallError(LocalModelError):
    """Downloading or assembling the weights failed."""


class NoFreePortError(LocalModelError):
    """No TCP port on 127.0.0.1 could be bound for the server."""


class ModelLoadError(LocalModelError):
    """llama.cpp could not load the model file."""
