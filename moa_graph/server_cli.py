"""The ``moa serve`` command: options in, :func:`moa_graph.server.serve` out.

Only typer is imported here; the server's imports happen when the command runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Optional

import typer

from moa_graph.cli_options import DEFAULT_PRESET, config_option, preset_option

ServedPresetsOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer reads the annotation at run time
    preset_option("Preset to serve, as a model of that name; repeatable (default: as moa ask)."),
]
ServedConfigsOption = Annotated[
    Optional[list[Path]],  # noqa: UP045
    config_option("Config file to serve, named by its 'name' field or file stem; repeatable."),
]
HostOption = Annotated[str, typer.Option(help="Address to bind.")]
PortOption = Annotated[int, typer.Option(help="TCP port.")]
ApiKeyOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        envvar="MOA_API_KEY",
        help="Key clients must send as 'Authorization: Bearer'; required off loopback. "
        "Prefer the environment variable: arguments show in the process list.",
        show_default=False,
    ),
]
MaxConcurrentOption = Annotated[
    int, typer.Option(min=1, help="MoA runs at once; more are answered 429.")
]
MaxBodyBytesOption = Annotated[
    int, typer.Option(min=1, help="Largest request body; larger is answered 413.")
]
BodyTimeoutOption = Annotated[
    float,
    typer.Option(
        min=0.001,
        help="Seconds a client may take to send its request body; slower is answered 408.",
    ),
]
CheckpointOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        help="Keep every run: 'sqlite:PATH' or a 'postgresql://' URL (extra 'postgres'); "
        "each request gets its own thread id, sent back in the X-MoA-Thread-Id header.",
        show_default=False,
    ),
]


def serve_command(
    preset: ServedPresetsOption = None,
    config_file: ServedConfigsOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    api_key: ApiKeyOption = None,
    max_concurrent: MaxConcurrentOption = 4,
    max_body_bytes: MaxBodyBytesOption = 1_000_000,
    body_timeout: BodyTimeoutOption = 30.0,
    checkpoint: CheckpointOption = None,
) -> None:
    """Serve Mixture-of-Agents presets behind an OpenAI-compatible API."""
    from moa_graph.errors import ConfigError

    try:
        from moa_graph.server import check_bind, serve, served_configs
    except ImportError as error:
        raise ConfigError(f"moa serve needs {error.name}: pip install 'moa-graph[serve]'") from None

    check_bind(host, api_key)
    if not preset and not config_file:
        preset = [DEFAULT_PRESET]
    configs = served_configs(preset or (), config_file or ())
    asyncio.run(
        serve(
            configs,
            host=host,
            port=port,
            api_key=api_key,
            max_concurrent=max_concurrent,
            max_body_bytes=max_body_bytes,
            body_timeout_s=body_timeout,
            checkpoint=checkpoint,
        )
    )
