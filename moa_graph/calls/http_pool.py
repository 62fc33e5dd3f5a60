"""HTTP clients whose pooled connections never outlive the event loop that opened them.

An ``asyncio`` connection belongs to the loop it was opened on. A chat model client
is built once and shared by every run in the process (see :mod:`moa_graph.graph.clients`),
while each ``asyncio.run`` (every turn of ``moa chat``, every call of a program that
runs a compiled graph twice) has a loop of its own: a pooled keep-alive connection
of a finished loop then fails with "Event loop is closed". The transport here keeps
one connection pool per running loop, and forgets a pool when its loop is gone.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, cast

import openai

# The httpx the installed OpenAI SDK is built on (httpx2 for openai>=3): what its
# clients are handed must come from it, as this module of langchain-openai says.
from langchain_openai._compat import httpx


class _PerLoopTransport(httpx.AsyncBaseTransport):
    """Sends each request through a connection pool of the loop it runs on."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport
        ] = weakref.WeakKeyDictionary()

    def _pool(self) -> httpx.AsyncHTTPTransport:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = httpx.AsyncHTTPTransport(**self._options)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool().handle_async_request(request)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        if (pool := self._pools.pop(loop, None)) is not None:
            await pool.aclose()


def async_http_client(*, trust_env: bool = True) -> openai.DefaultAsyncHttpxClient:
    """Return an async client for OpenAI-compatible APIs that any event loop may use.

    Args:
        trust_env: Read proxies from the environment (never for loopback servers).
    """
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    transport = _PerLoopTransport(limits=limits, trust_env=trust_env)
    # Any: type checkers see classic httpx behind the compat name, the SDK httpx2.
    return openai.DefaultAsyncHttpxClient(transport=cast(Any, transport), trust_env=trust_env)
