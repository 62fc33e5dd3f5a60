"""What the ``moa`` commands share: the default preset, option declarations, config choice.

Only typer is imported at module level, so every command's ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from moa_graph.config import MoAConfig

DEFAULT_PRESET = "local"
"""The preset a command runs when given neither ``--preset`` nor ``--config``."""

PresetOption = Annotated[
    Optional[str],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option(
        "--preset", "-p", help=f"Preset name (default: {DEFAULT_PRESET}).", show_default=False
    ),
]
ConfigOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--config", "-c", help="Config file (YAML, TOML or JSON).", show_default=False),
]
ConfigFilesOption = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option(
        "--config",
        "-c",
        help="Config file (YAML, TOML or JSON); repeat for several.",
        show_default=False,
    ),
]


def chosen_configs(preset: str | None, config_files: Sequence[Path] = ()) -> list[MoAConfig]:
    """Return the configs a command's ``--preset`` or ``--config`` options name.

    A preset is a name, never a path; files are read as config files.

    Raises:
        ConfigError: Both options were given, or a preset or file is unknown or invalid.
    """
    from moa_graph.config import load_config
    from moa_graph.errors import ConfigError
    from moa_graph.presets import load_preset

    if preset and config_files:
        raise ConfigError("give --preset or --config, not both")
    if config_files:
        return [load_config(path) for path in config_files]
    return [load_preset(preset or DEFAULT_PRESET)]
