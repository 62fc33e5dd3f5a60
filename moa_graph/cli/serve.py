"""The ``moa serve`` command: options in, :func:`moa_graph.server.app.serve` out.

Only typer and the server's options (:mod:`moa_graph.server.options`, the standard
library alone) are imported here; the server's imports happen when the command runs.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from moa_graph.cli.options import DEFAULT_PRESET, config_option, preset_option
from moa_graph.server.options import DEFAULTS, ServerOptions

ServedPresetsOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer reads the annotation at run time
    preset_option("Preset to serve, as a model of that name; repeatable (default: as moa ask)."),
]
ServedConfigsOption = Annotated[
    Optional[list[Path]],  # noqa: UP045
    config_option("Config file to serve, named by its 'name' field or file stem; repeatable."),
]


def _option(help: str) -> Any:
    """Return the declaration of an option with no default shown, and this help text."""
    return typer.Option(help=help, show_default=False)


HostOption = Annotated[str, typer.Option(help="Address to bind.")]
PortOption = Annotated[int, typer.Option(help="TCP port.")]
ApiKeyOption = Annotated[
    Optional[str],  # noqa: UP045
    _option(
        "Key clients must send as 'Authorization: Bearer'; required off loopback. "
        "Every user of the machine can read it in the process list: prefer the "
        "MOA_API_KEY environment variable or --api-key-file."
    ),
]
ApiKeyFileOption = Annotated[
    Optional[Path],  # noqa: UP045
    _option("File holding the API key (instead of $MOA_API_KEY)."),
]
AllowHostOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    _option(
        "Also answer requests whose Host is this NAME (any port) or NAME:PORT, "
        "besides the bound address and localhost; others are answered 421. Repeatable."
    ),
]
AllowOriginOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    _option(
        "Let pages of this web origin (such as http://localhost:3000) call the "
        "server, with CORS; other origins are answered 403. Repeatable."
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
    _option(
        "Keep every run: 'sqlite:PATH' or a 'postgresql://' URL (extra 'postgres'); "
        "each request gets its own thread id, sent back in the X-MoA-Thread-Id header."
    ),
]


def serve_command(
    preset: ServedPresetsOption = None,
    config_file: ServedConfigsOption = None,
    host: HostOption = DEFAULTS.host,
    port: PortOption = DEFAULTS.port,
    api_key: ApiKeyOption = None,
    api_key_file: ApiKeyFileOption = None,
    max_concurrent: MaxConcurrentOption = DEFAULTS.max_concurrent,
    max_body_bytes: MaxBodyBytesOption = DEFAULTS.max_body_bytes,
    body_timeout: BodyTimeoutOption = DEFAULTS.body_timeout_s,
    checkpoint: CheckpointOption = None,
    allow_host: AllowHostOption = None,
    allow_origin: AllowOriginOption = None,
) -> None:
    """Serve Mixture-of-Agents presets behind an OpenAI-compatible API."""
    from moa_graph.calls.secrets import register_value
    from moa_graph.errors import ConfigError

    try:
        from moa_graph.server.app import check_bind, serve, served_configs
        from moa_graph.server.guard import allowed_hosts, check_origins
    except ImportError as error:
        raise ConfigError(f"moa serve needs {error.name}: pip install 'moa-graph[serve]'") from None

    options = ServerOptions(
        host=host,
        port=port,
        api_key=_api_key(api_key, api_key_file),
        max_concurrent=max_concurrent,
        max_body_bytes=max_body_bytes,
        body_timeout_s=body_timeout,
        checkpoint=checkpoint,
        allow_hosts=tuple(allow_host or ()),
        allow_origins=tuple(allow_origin or ()),
    )
    if options.api_key:
        register_value(options.api_key)  # redacted wherever MOA_API_KEY's value would be
    check_bind(options.host, options.api_key)
    allowed_hosts(options.host, options.port, options.allow_hosts)
    check_origins(options.allow_origins)
    if not preset and not config_file:
        preset = [DEFAULT_PRESET]
    asyncio.run(serve(served_configs(preset or (), config_file or ()), options))


KEY_ON_COMMAND_LINE = (
    "warning: --api-key can be read by every user of this machine (ps, /proc/*/cmdline); "
    "set MOA_API_KEY or use --api-key-file instead"
)


def _api_key(flag: str | None, path: Path | None) -> str | None:
    """Return the server's API key: from ``--api-key``, ``--api-key-file`` or ``$MOA_API_KEY``.

    ``--api-key`` works, with a warning that the command line is public, and so does a
    key file other users may read, with a warning saying so; an empty ``MOA_API_KEY``
    counts as unset.

    Raises:
        ConfigError: Both options are given, the key is empty, or the file cannot be
            read or holds more than one word.
    """
    from moa_graph.errors import ConfigError

    if flag is not None and path is not None:
        raise ConfigError("give --api-key or --api-key-file, not both")
    if flag is not None:
        typer.echo(KEY_ON_COMMAND_LINE, err=True)
        if not flag.strip():
            raise ConfigError("--api-key is empty")
        return flag
    if path is None:
        return os.environ.get("MOA_API_KEY") or None
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"cannot read the API key file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the API key file {path} is not UTF-8 text") from None
    if not key:
        raise ConfigError(f"the API key file {path} is empty")
    if len(key.split()) > 1:
        raise ConfigError(f"the API key file {path} must hold the key alone, on one line")
    if (mode := path.stat().st_mode) & 0o077:
        typer.echo(
            f"warning: the API key file {path} can be read by other users "
            f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600 {path}`",
            err=True,
        )
    return key
