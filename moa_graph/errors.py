"""Exceptions raised by moa-graph.

Every error a user can cause derives from :class:`MoAError` and carries a one-line
message meant to be shown as is, so the command line and the server can print it
without a traceback.
"""

from __future__ import annotations


class MoAError(Exception):
    """Base class of every error moa-graph raises on purpose."""


class ConfigError(MoAError, ValueError):
    """A configuration, preset or config file is invalid."""


class InputError(MoAError, ValueError):
    """The conversation given to a MoA graph cannot be answered."""


class MissingAPIKeyError(ConfigError):
    """A model's provider needs an API key that is not set in the environment."""


class ModelCallError(MoAError):
    """A model call failed for good: a permanent error, or transient ones past retries."""


class StreamInterruptedError(ModelCallError):
    """A streamed answer broke off after its first tokens reached the caller.

    It is neither retried nor handed to a fallback: text already shown cannot be taken
    back, and another attempt's text would follow it.
    """


class LayerError(MoAError):
    """Too few agents of a layer answered; the message names every failed agent."""


class ContextOverflowError(InputError):
    """A prompt does not fit an agent's context window even without references."""


class StructuredOutputError(MoAError):
    """The MoA's answer did not validate against the requested schema, after its retries."""
