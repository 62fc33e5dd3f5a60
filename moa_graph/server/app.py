"""``moa serve``: Mixture-of-Agents presets behind the OpenAI chat completions API.

Each served model is a preset or config; its graph is compiled once at start and
reused by every request. ``POST /v1/chat/completions`` runs it (streamed or not),
``GET /v1/models`` lists the served models, errors use the OpenAI error format.

Safety: the server binds 127.0.0.1 unless told otherwise, refuses any other address
without an API key, answers only its own clients (never a web page: see
``server.guard``), limits body size and concurrent runs, and never repeats a key.

This module builds and serves the app; the package's docstring names its parts.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from moa_graph.calls.secrets import RedactingFilter
from moa_graph.config.model import MoAConfig
from moa_graph.errors import ConfigError
from moa_graph.run.checkpoints import open_checkpointer
from moa_graph.server.endpoints import Endpoints
from moa_graph.server.errors import APIError, ClientGone
from moa_graph.server.guard import LOOPBACK_HOSTS, allowed_hosts, guard_middleware
from moa_graph.server.options import DEFAULTS, ServerOptions
from moa_graph.server.runs import THREAD_HEADER as THREAD_HEADER
from moa_graph.server.served import ServedModel

# Re-exported: ``moa serve`` and users import these from here.
from moa_graph.server.served import served_configs as served_configs
from moa_graph.server.wire import error_json

_log = logging.getLogger(__name__)
"""The logger every part of the server writes to, by this name; ``serve`` redacts it."""


def is_loopback(host: str) -> bool:
    """Return whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to serve beyond this machine without an API key.

    Raises:
        ConfigError: ``host`` is not a loopback address and no key is set.
    """
    if not is_loopback(host) and not api_key:
        raise ConfigError(
            f"refusing to listen on {host} without an API key: set MOA_API_KEY "
            "(or --api-key-file), or bind 127.0.0.1"
        )


async def _client_gone(request: Request, error: Exception) -> Response:
    return Response(status_code=499)  # nginx's "client closed request": nobody reads it


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, APIError)
    return error.response()


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = "not_found" if error.status_code == 404 else None
    return JSONResponse(error_json(str(error.detail), code=code), error.status_code)


_ERROR_HANDLERS = {APIError: _api_error, HTTPException: _http_error, ClientGone: _client_gone}


def create_app(
    configs: Mapping[str, MoAConfig],
    options: ServerOptions = DEFAULTS,
    *,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    hosts: Collection[str] = LOOPBACK_HOSTS,
) -> Starlette:
    """Build the ASGI app serving ``configs`` under their names.

    Every config's graph is built and compiled here, so a missing API key or an
    invalid config fails before the server listens.

    Args:
        configs: Served model name to config.
        options: The key, the limits and the web origins let in (``host``, ``port``,
            ``checkpoint`` and ``allow_hosts`` are :func:`serve`'s).
        checkpointer: When set, each request runs on a fresh thread id, returned
            in the ``X-MoA-Thread-Id`` header.
        hosts: The ``Host`` values answered, each ``NAME`` (any port) or
            ``NAME:PORT``; any other is answered 421. The default is the loopback
            names on any port; ``serve`` gives its address and port (see
            :func:`moa_graph.server.guard.allowed_hosts`).

    Returns:
        A Starlette app; run it with any ASGI server.

    Raises:
        ConfigError: A config is invalid or one of its models cannot be resolved,
            or a host or origin is malformed.
    """
    middleware = guard_middleware(hosts, options.allow_origins)
    if options.max_concurrent < 1 or options.max_body_bytes < 1:
        raise ConfigError("max_concurrent and max_body_bytes must be at least 1")
    if not options.body_timeout_s > 0:
        raise ConfigError("body_timeout_s must be more than 0")
    models = {name: ServedModel(name, config, checkpointer) for name, config in configs.items()}
    endpoints = Endpoints(models, options)
    return Starlette(
        routes=endpoints.routes(), middleware=middleware, exception_handlers=_ERROR_HANDLERS
    )


async def serve(configs: Mapping[str, MoAConfig], options: ServerOptions = DEFAULTS) -> None:
    """Serve ``configs`` over HTTP until interrupted.

    Args:
        configs: Served model name to config (see :func:`served_configs`).
        options: Where to listen, the key, the limits, the checkpoint store, and
            the hosts and origins let in.

    Raises:
        ConfigError: The bind is refused, PostgreSQL support is not installed, a
            host or origin is malformed, or a config cannot be built.
    """
    import uvicorn

    check_bind(options.host, options.api_key)
    hosts = allowed_hosts(options.host, options.port, options.allow_hosts)
    checkpoint = options.checkpoint
    opened: AbstractAsyncContextManager[BaseCheckpointSaver[Any] | None] = (
        nullcontext(None)
        if checkpoint is None
        else open_checkpointer(checkpoint.removeprefix("sqlite:"))
    )
    async with opened as checkpointer:
        app = create_app(configs, options, checkpointer=checkpointer, hosts=hosts)
        _log.info("serving %s on %s:%s", ", ".join(configs), options.host, options.port)
        config = uvicorn.Config(
            app, host=options.host, port=options.port, lifespan="off", server_header=False
        )
        _redact_logs()
        await uvicorn.Server(config).serve()


def _redact_logs() -> None:
    """Redact secrets from every record the server's log handlers write (tracebacks too)."""
    _log.addFilter(RedactingFilter())
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in ("uvicorn", "uvicorn.error"))]
    for handler in {h for logger in loggers for h in logger.handlers}:
        handler.addFilter(RedactingFilter())
