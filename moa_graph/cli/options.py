"""What the ``moa`` commands share: the default preset, option declarations, config choice.

Only typer (and the standard library) is imported at module level, so every command's
``--help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, get_type_hints

import typer

if TYPE_CHECKING:
    from moa_graph.config.model import MoAConfig

DEFAULT_PRESET = "local"
"""The preset a command runs when given neither ``--preset`` nor ``--config``, and whose
models ``moa models install`` installs when given no names."""


def preset_option(help: str) -> Any:
    """Return the declaration of a ``--preset``/``-p`` option with this help text."""
    return typer.Option("--preset", "-p", help=help, show_default=False)


def config_option(help: str) -> Any:
    """Return the declaration of a ``--config``/``-c`` option with this help text."""
    return typer.Option("--config", "-c", help=help, show_default=False)


PresetOption = Annotated[
    Optional[str],  # noqa: UP045 - typer reads the annotation at run time
    preset_option(f"Preset name (default: {DEFAULT_PRESET})."),
]
ConfigOption = Annotated[
    Optional[Path],  # noqa: UP045
    config_option("Config file (YAML, TOML or JSON)."),
]
ConfigFilesOption = Annotated[
    Optional[list[Path]],  # noqa: UP045
    config_option("Config file (YAML, TOML or JSON); repeat for several."),
]


Command = Callable[..., None]


def option_group(group: type[Any], name: str) -> Callable[[Command], Command]:
    """Let commands share a dataclass of options, which each takes as one parameter.

    Typer has no option groups. The decorated command's keyword-only parameter
    ``name`` stands for the dataclass's fields: typer sees them there, in their
    order, declared by their ``Annotated`` types and defaults, and the command gets
    them as one instance of ``group``.
    """
    hints = get_type_hints(group, include_extras=True)
    fields = [field.name for field in dataclasses.fields(group)]
    options = [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=hints[field.name],
        )
        for field in dataclasses.fields(group)
    ]

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        parameters = [
            option
            for parameter in signature.parameters.values()
            for option in (options if parameter.name == name else [parameter])
        ]

        @functools.wraps(command)
        def grouped(**kwargs: Any) -> None:
            values = {field: kwargs.pop(field) for field in fields}
            command(**kwargs, **{name: group(**values)})

        grouped.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        grouped.__annotations__ = {p.name: p.annotation for p in parameters}
        grouped.__annotations__["return"] = signature.return_annotation
        return grouped

    return decorate


def chosen_configs(preset: str | None, config_files: Sequence[Path] = ()) -> list[MoAConfig]:
    """Return the configs a command's ``--preset`` or ``--config`` options name.

    A preset is a name, never a path; files are read as config files.

    Raises:
        ConfigError: Both options were given, or a preset or file is unknown or invalid.
    """
    from moa_graph.config.resolve import named_configs
    from moa_graph.errors import ConfigError

    if preset and config_files:
        raise ConfigError("give --preset or --config, not both")
    presets = [] if config_files else [preset or DEFAULT_PRESET]
    return [config for _, config in named_configs(presets, config_files)]


def chosen_config(preset: str | None, config_file: Path | None) -> MoAConfig:
    """Return the one config a command's ``--preset`` or single ``--config`` option names.

    Raises:
        ConfigError: See :func:`chosen_configs`.
    """
    return chosen_configs(preset, [config_file] if config_file else [])[0]
