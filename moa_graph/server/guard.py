"""Who ``moa serve`` answers: its own clients, never a web page they happen to visit.

Any page a browser shows can send requests to a loopback server: a "simple" POST
(``text/plain`` or a form) needs no CORS preflight, and a page whose name is
rebound to 127.0.0.1 (DNS rebinding) even reads the answers. So before any
endpoint runs, and before the body is read, a request is refused when:

- its ``Host`` is not an address of this server: 421 (Misdirected Request);
- it carries an ``Origin`` (browsers send one with every cross-origin request
  and every POST) that is not allowed: 403, preflights included.

(A chat request not sent as ``application/json``, as a form or a preflight-free
"simple" request is, is answered 415 by its endpoint.) Allowed origins get CORS
answers from Starlette's ``CORSMiddleware``, which on its own would only leave
the CORS headers off a refused origin's answer, not refuse it. Starlette's
``TrustedHostMiddleware`` is not used: it answers 400 in plain text and ignores the port.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from moa_graph.errors import ConfigError
from moa_graph.server.errors import APIError

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
"""The loopback names a local client may use, on any port unless one is given."""

_DEFAULT_PORT = 80
"""The port of a ``Host`` without one (the server speaks plain HTTP)."""
_MAX_HOST = 300
"""Longest ``Host`` value looked at; longer ones are refused unread."""
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([0-9]{1,5}))?")
"""A host name, IPv4 address or bracketed IPv6 address, then an optional port."""
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::[0-9]{1,5})?")
"""What a browser sends as ``Origin``: scheme, host and port only."""
_EXPOSED_HEADERS = ("X-MoA-Thread-Id", "Retry-After")
"""Answer headers a page of an allowed origin may read (beyond CORS's safe list)."""


def allowed_hosts(bind: str, port: int, extra: Iterable[str] = ()) -> list[str]:
    """Return the ``Host`` values a server bound to ``bind:port`` answers to.

    Args:
        bind: The address the server listens on (``::1`` is written ``[::1]``).
        port: Its port.
        extra: More names, each ``NAME`` (any port) or ``NAME:PORT``.

    Raises:
        ConfigError: An extra name is not a host name or address.
    """
    extra = list(extra)
    for host in extra:
        _parse_host(host)
    bound = f"[{bind}]" if ":" in bind else bind
    names = dict.fromkeys([bound.lower(), *LOOPBACK_HOSTS])
    return [*(f"{name}:{port}" for name in names), *extra]


def check_origins(origins: Iterable[str]) -> list[str]:
    """Return allowed origins as browsers write them (lower case).

    Raises:
        ConfigError: One is not an origin (``scheme://host[:port]``).
    """
    checked = []
    for origin in origins:
        if not _ORIGIN.fullmatch(origin.lower()):
            raise ConfigError(
                f"allowed origin '{origin}' is not an origin: give scheme://host[:port], "
                "such as http://localhost:3000 (no path, no trailing slash)"
            )
        checked.append(origin.lower())
    return checked


def guard_middleware(hosts: Collection[str], origins: Collection[str]) -> list[Middleware]:
    """Return the middleware that lets in only requests from the server's own clients.

    Args:
        hosts: The ``Host`` values answered, each ``NAME`` (any port) or ``NAME:PORT``.
        origins: The web origins whose pages may call the server (with CORS).

    Raises:
        ConfigError: A host or origin is malformed.
    """
    allowed = frozenset(_parse_host(host) for host in hosts)
    checked = check_origins(origins)
    return [
        Middleware(ClientGuard, hosts=allowed, origins=frozenset(checked)),
        Middleware(
            CORSMiddleware,
            allow_origins=checked,
            allow_methods=("GET", "POST"),
            allow_headers=("*",),
            expose_headers=_EXPOSED_HEADERS,
            allow_private_network=True,
        ),
    ]


class ClientGuard:
    """ASGI middleware refusing requests by their ``Host`` and ``Origin`` headers."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: frozenset[tuple[str, int | None]],
        origins: frozenset[str],
    ) -> None:
        self.app = app
        self._hosts = hosts
        self._origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a refused HTTP request with its error; pass anything else on."""
        if scope["type"] == "http":
            refusal = self.refusal(Headers(scope=scope))
            if refusal is not None:
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: Headers) -> APIError | None:
        """Return why a request with these headers is refused, or None to let it in."""
        host = headers.get("host")
        if host is None:
            return APIError(421, "the request has no Host header", code="host_not_allowed")
        if not self._host_allowed(host):
            name = host[:_MAX_HOST]
            return APIError(
                421,
                f"the Host header '{name}' is not an address of this server; "
                "to answer it, start the server with --allow-host",
                code="host_not_allowed",
            )
        origin = headers.get("origin")
        if origin is not None and origin not in self._origins:
            return APIError(
                403,
                f"the origin '{origin[:_MAX_HOST]}' may not use this server; "
                "to let its pages in, start the server with --allow-origin",
                code="origin_not_allowed",
            )
        return None

    def _host_allowed(self, host: str) -> bool:
        if len(host) > _MAX_HOST:
            return False
        match = _HOST.fullmatch(host.lower())
        if match is None:
            return False
        name, port = match[1], int(match[2] or _DEFAULT_PORT)
        return (name, port) in self._hosts or (name, None) in self._hosts


def _parse_host(host: str) -> tuple[str, int | None]:
    """Return an allowed host's name and port (None: any port).

    Raises:
        ConfigError: ``host`` is not ``NAME`` or ``NAME:PORT``.
    """
    match = _HOST.fullmatch(host.lower())
    if match is None:
        raise ConfigError(
            f"allowed host '{host}' is not a host name or address with an optional "
            ":PORT, such as moa.example.com or 192.168.1.5:8000"
        )
    return match[1], int(match[2]) if match[2] else None
