"""The one resolver: what a user names (a config, its data, a preset, a file) to a config.

Every entry point turns names into a :class:`~moa_graph.config.model.MoAConfig`
here: :func:`moa_graph.create_moa` and ``ChatMoA`` through :func:`resolve_config`,
``moa serve`` and the other commands through :func:`named_configs`, where a preset
is only ever a name and a file only ever a path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from moa_graph.config.files import load_config
from moa_graph.config.model import MoAConfig, config_from_data
from moa_graph.config.presets import load_preset

ConfigSource = MoAConfig | Mapping[str, Any] | str | Path
"""What names a config: the config, its data, a preset name, or a config file's path."""

CONFIG_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
"""A string ending so names a config file; any other string names a preset."""


def resolve_config(config: ConfigSource) -> MoAConfig:
    """Accept a config, plain config data, a preset name, or a config file path.

    A :class:`~pathlib.Path`, or a string ending in a config file suffix, is a file;
    any other string is a preset name.

    Raises:
        ConfigError: The preset or file is unknown, or the config invalid.
    """
    if isinstance(config, MoAConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_data(config)
    if isinstance(config, Path) or Path(config).suffix in CONFIG_SUFFIXES:
        return load_config(config)
    return load_preset(config)


def named_configs(
    presets: Iterable[str] = (), files: Iterable[str | Path] = ()
) -> list[tuple[str, MoAConfig]]:
    """Resolve presets by name (never as a path) and files by path, each with its name.

    A preset is named as given; a file by its config's ``name``, or else its stem.
    Presets come first, then files, each in the order given.

    Raises:
        ConfigError: A preset or file is unknown, or a config invalid.
    """
    named = [(name, load_preset(name)) for name in presets]
    for path in files:
        config = resolve_config(Path(path))
        named.append((config.name or Path(path).stem, config))
    return named
