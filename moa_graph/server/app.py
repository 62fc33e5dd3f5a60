"""``moa serve``: Mixture-of-Agents presets behind the OpenAI chat completions API.

Each served model is a preset or config; its graph is compiled once at start and
reused by every request. ``POST /v1/chat/completions`` runs it (streamed or not),
``GET /v1/models`` lists the served models, errors use the OpenAI error format.

Safety: the server binds 127.0.0.1 unless told otherwise, refuses any other address
without an API key, answers only its own clients (never a web page: see
``server_guard``), limits body size and concurrent runs, and never repeats a key.

This module builds and serves the app; its parts are the served models
(``server_models``), the endpoints and their limits (``server_endpoints``), one
request's run (``server_runs``), the streamed answer and clients that go away
(``server_streams``), the errors answered (``server_errors``), and the clients let
in (``server_guard``).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection, Mapping, Sequence
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
from moa_graph.server.runs import THREAD_HEADER as THREAD_HEADER
from moa_graph.server.served import ServedModel

# Re-exported: ``moa serve`` and users import these from here.
from moa_graph.server.served import served_configs as served_configs
from moa_graph.server.wire import error_json

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_CONCURRENT = 4
"""MoA runs at once; each run makes several model calls."""
DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_BODY_TIMEOUT_S = 30.0
"""Seconds a client may take to send its request body."""

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
    *,
    api_key: str | None = None,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    hosts: Collection[str] = LOOPBACK_HOSTS,
    origins: Collection[str] = (),
) -> Starlette:
    """Build the ASGI app serving ``configs`` under their names.

    Every config's graph is built and compiled here, so a missing API key or an
    invalid config fails before the server listens.

    Args:
        configs: Served model name to config.
        api_key: The key clients must send as ``Authorization: Bearer``; None
            lets every client in.
        max_concurrent: MoA runs at once; one more is answered 429.
        max_body_bytes: Largest request body; a larger one is answered 413.
        body_timeout_s: Seconds a client may take to send its request body; a
            slower one is answered 408.
        checkpointer: When set, each request runs on a fresh thread id, returned
            in the ``X-MoA-Thread-Id`` header.
        hosts: The ``Host`` values answered, each ``NAME`` (any port) or
            ``NAME:PORT``; any other is answered 421. The default is the loopback
            names on any port; ``serve`` gives its address and port (see
            :func:`moa_graph.server.guard.allowed_hosts`).
        origins: The web origins (``scheme://host[:port]``) whose pages may call
            the server, with CORS; a request from any other origin is answered 403.

    Returns:
        A Starlette app; run it with any ASGI server.

    Raises:
        ConfigError: A config is invalid or one of its models cannot be resolved,
            or a host or origin is malformed.
    """
    middleware = guard_middleware(hosts, origins)
    if max_concurrent < 1 or max_body_bytes < 1:
        raise ConfigError("max_concurrent and max_body_bytes must be at least 1")
    if not body_timeout_s > 0:
        raise ConfigError("body_timeout_s must be more than 0")
    models = {name: ServedModel(name, config, checkpointer) for name, config in configs.items()}
    endpoints = Endpoints(
        models,
        api_key=api_key,
        max_concurrent=max_concurrent,
        max_body_bytes=max_body_bytes,
        body_timeout_s=body_timeout_s,
    )
    return Starlette(
        routes=endpoints.routes(), middleware=middleware, exception_handlers=_ERROR_HANDLERS
    )


async def serve(
    configs: Mapping[str, MoAConfig],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    api_key: str | None = None,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    checkpoint: str | None = None,
    allow_hosts: Sequence[str] = (),
    allow_origins: Sequence[str] = (),
) -> None:
    """Serve ``configs`` over HTTP until interrupted.

    Args:
        configs: Served model name to config (see :func:`served_configs`).
        host: Address to bind; anything but loopback needs ``api_key``.
        port: TCP port.
        api_key: The key clients must send.
        max_concurrent: MoA runs at once.
        max_body_bytes: Largest request body.
        body_timeout_s: Seconds a client may take to send its request body.
        checkpoint: ``sqlite:PATH`` (or just a path), or a ``postgresql://`` URL:
            run each request on its own thread id in that checkpoint store.
        allow_hosts: ``Host`` values answered besides ``host:port`` and the
            loopback names on ``port``: ``NAME`` (any port) or ``NAME:PORT``.
        allow_origins: Web origins whose pages may call the server.

    Raises:
        ConfigError: The bind is refused, PostgreSQL support is not installed, a
            host or origin is malformed, or a config cannot be built.
    """
    import uvicorn

    check_bind(host, api_key)
    hosts = allowed_hosts(host, port, allow_hosts)
    opened: AbstractAsyncContextManager[BaseCheckpointSaver[Any] | None] = (
        nullcontext(None)
        if checkpoint is None
        else open_checkpointer(checkpoint.removeprefix("sqlite:"))
    )
    async with opened as checkpointer:
        app = create_app(
            configs,
            api_key=api_key,
            max_concurrent=max_concurrent,
            max_body_bytes=max_body_bytes,
            body_timeout_s=body_timeout_s,
            checkpointer=checkpointer,
            hosts=hosts,
            origins=allow_origins,
        )
        _log.info("serving %s on %s:%s", ", ".join(configs), host, port)
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", server_header=False)
        _redact_logs()
        await uvicorn.Server(config).serve()


def _redact_logs() -> None:
    """Redact secrets from every record the server's log handlers write (tracebacks too)."""
    _log.addFilter(RedactingFilter())
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in ("uvicorn", "uvicorn.error"))]
    for handler in {h for logger in loggers for h in logger.handlers}:
        handler.addFilter(RedactingFilter())
