"""How ``moa serve`` serves: where, to whom, and its limits, written once.

The command line builds one :class:`ServerOptions` from its flags (and takes its
defaults from here); :func:`~moa_graph.server.app.serve` and
:func:`~moa_graph.server.app.create_app` read it. Only the standard library is
imported, so ``moa --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerOptions:
    """What a ``moa serve`` server is told at start.

    Attributes:
        host: Address to bind; anything but loopback needs ``api_key``.
        port: TCP port.
        api_key: The key clients must send as ``Authorization: Bearer``; None lets
            every client in. Never shown in the options' ``repr``.
        max_concurrent: MoA runs at once; one more is answered 429.
        max_body_bytes: Largest request body; a larger one is answered 413.
        body_timeout_s: Seconds a client may take to send its request body; a
            slower one is answered 408.
        checkpoint: ``sqlite:PATH`` (or just a path), or a ``postgresql://`` URL:
            run each request on its own thread id in that checkpoint store.
        allow_hosts: ``Host`` values answered besides ``host:port`` and the
            loopback names on ``port``: ``NAME`` (any port) or ``NAME:PORT``.
        allow_origins: Web origins (``scheme://host[:port]``) whose pages may call
            the server, with CORS; a request from any other origin is answered 403.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)
    max_concurrent: int = 4  # each run makes several model calls
    max_body_bytes: int = 1_000_000
    body_timeout_s: float = 30.0
    checkpoint: str | None = None
    allow_hosts: tuple[str, ...] = ()
    allow_origins: tuple[str, ...] = ()


DEFAULTS = ServerOptions()
"""The options of a server told nothing (the command line's defaults)."""
