"""Presets: named configurations shipped as YAML files inside the package.

A preset may name another in ``extends``; its own keys then replace the base's.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import yaml

from moa_graph.config.model import MoAConfig, config_from_data
from moa_graph.errors import ConfigError

_PRESETS = resources.files("moa_graph.config.presets")

_PRESET_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_preset_name(name: str) -> str:
    """Return ``name`` if it is a plain preset name, never a path.

    A preset name has letters, digits, ``-``, ``_`` and ``.`` (not first), and no
    ``..``.

    Raises:
        ConfigError: ``name`` is not a preset name (e.g. ``../x``).
    """
    return check_name(name, "preset name")


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it can name a file: the rule of :func:`check_preset_name`.

    Args:
        name: The name to check.
        what: What it is, for the error, e.g. ``"preset name"``.

    Raises:
        ConfigError: ``name`` is not such a name.
    """
    if not isinstance(name, str) or not _PRESET_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"invalid {what} {name!r}: use only letters, digits, '-', '_' and '.' "
            "(not first, not '..')"
        )
    return name


def list_presets() -> list[str]:
    """Return the names of the shipped presets, sorted."""
    return sorted(
        p.name.removesuffix(".yaml") for p in _PRESETS.iterdir() if p.name.endswith(".yaml")
    )


def preset_data(name: str) -> dict[str, Any]:
    """Return a preset as plain data, with ``extends`` resolved.

    Raises:
        ConfigError: ``name`` (or the preset it extends) is not a preset name, or
            no preset has that name.
    """
    path = _PRESETS / f"{check_preset_name(name)}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}' (known: {', '.join(list_presets())})")
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    base = data.pop("extends", None)
    return {**preset_data(base), **data} if base else data


def load_preset(name: str, **overrides: Any) -> MoAConfig:
    """Load a preset by name, with any field replaced.

    Args:
        name: One of :func:`list_presets`.
        **overrides: Config fields to replace, e.g. ``aggregator="openai:gpt-4o"``.

    Returns:
        The validated config, named after the preset.

    Raises:
        ConfigError: Not a preset name, unknown preset, or an override that makes the
            config invalid.

    Example:
        >>> load_preset("together-moa", max_tokens=256).max_tokens
        256
    """
    data = {**preset_data(name), "name": name, **overrides}
    return config_from_data(data, source=f"preset '{name}'")
