"""In-process llama.cpp servers, one per model file, shared by the whole process.

Each server is xllamacpp's C++ port of ``llama-server``: an OpenAI-compatible HTTP
endpoint on 127.0.0.1, on a port the operating system picks, with several parallel
slots, so that proposers calling the same model at the same time are decoded in one
batch (continuous batching). A server starts the first time its model is asked for,
is reused by every agent of that model, and stops at :func:`shutdown` or at exit.

Sizing, for a CPU: every slot gets :data:`SLOT_CONTEXT` tokens of its own context,
enough for an aggregator prompt that quotes three 512-token proposals and still
leaves room for a 512-token answer. A request that does not fit is refused by the
server with HTTP 400 ("request (N tokens) exceeds the available context size"),
which reaches the caller as ``openai.BadRequestError``; nothing reaches the decoder.
The KV cache this reserves is small for these models (about 0.2 to 0.5 GB), and
compute only grows with the tokens actually in use.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import xllamacpp

from moa_graph.local.catalog import LocalModel
from moa_graph.local.errors import LocalModelError, ModelLoadError, NoFreePortError
from moa_graph.local.weights import installed_path

HOST = "127.0.0.1"
"""The servers listen on loopback only."""

SLOTS = 4
"""Parallel sequences per server: three proposers and one more request."""

SLOT_CONTEXT = 4096
"""Context window of each slot, in tokens."""

THREADS_ENV = "MOA_GRAPH_THREADS"
"""Environment variable that sets the compute threads of each server."""

_PROMPT_CACHE_MIB = 512


def compute_threads() -> int:
    """Return how many threads each server computes with.

    ``$MOA_GRAPH_THREADS`` when set, else every CPU this process may run on. llama.cpp
    synchronizes its threads at every operation, so when the CPUs are shared (another
    busy process, or two servers decoding at once) a thread that is not scheduled
    stalls the others: on 2 busy cores, 1 thread generated 25 times faster than 2.

    Raises:
        LocalModelError: ``$MOA_GRAPH_THREADS`` is not a positive integer.
    """
    configured = os.environ.get(THREADS_ENV)
    if configured is None:
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
    if not configured.strip().isdigit() or int(configured) < 1:
        raise LocalModelError(f"{THREADS_ENV} must be a positive integer, not '{configured}'")
    return int(configured)


class LlamaServer:
    """One running llama.cpp server for one GGUF file.

    Args:
        path: The GGUF file, already verified.
        alias: The model name the server reports (``/v1/models``).
        slots: Parallel sequences.
        slot_context: Context window of each slot, in tokens.
        configure: Changes llama.cpp's settings before the server starts (e.g. a
            draft model for speculative decoding; ``benchmarks/local.py`` measures
            such levers).

    Raises:
        NoFreePortError: No port on 127.0.0.1 could be bound.
        ModelLoadError: llama.cpp could not load the file.
        LocalModelError: ``$MOA_GRAPH_THREADS`` is invalid.
    """

    def __init__(
        self,
        path: Path,
        *,
        alias: str,
        slots: int = SLOTS,
        slot_context: int = SLOT_CONTEXT,
        configure: Callable[[xllamacpp.CommonParams], None] | None = None,
    ) -> None:
        threads = compute_threads()
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.model_alias = {alias}
        params.hostnames = [HOST]
        params.port = 0  # the operating system picks a free port while binding: no race
        params.n_parallel = slots
        params.n_ctx = slots * slot_context  # split evenly over the slots
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.cache_ram_mib = _PROMPT_CACHE_MIB
        params.ui = False
        params.verbosity = 0
        if configure is not None:
            configure(params)
        try:
            self._server: xllamacpp.Server | None = xllamacpp.Server(params)
        except RuntimeError:
            # xllamacpp reports every start failure with the same message; tell them apart.
            if not _loopback_port_available():
                raise NoFreePortError(
                    f"no free TCP port on {HOST} for the local model server"
                ) from None
            raise ModelLoadError(
                f"llama.cpp could not load {path.name}: "
                "not a GGUF model it supports, or not enough memory"
            ) from None
        self.path = path
        self.alias = alias
        self.slots = slots
        self.slot_context = slot_context
        self.base_url: str = self._server.listening_address
        """The server's root URL, e.g. ``http://127.0.0.1:41234``; the API is under ``/v1``."""

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def running(self) -> bool:
        """Whether :meth:`close` has not been called yet."""
        return self._server is not None

    def close(self) -> None:
        """Stop the server and wait for its threads; the port is closed when this returns."""
        server, self._server = self._server, None
        # Dropping the last reference runs the C++ destructor, which terminates the
        # main loop, stops the HTTP listener and joins their threads.
        del server


_lock = threading.Lock()
_servers: dict[str, LlamaServer] = {}  # by model name; one file per name


def server_for(model: LocalModel) -> LlamaServer:
    """Return the running server of a model, starting it on first use.

    The file is verified (see :func:`~moa_graph.local.weights.installed_path`)
    before a server loads it. Thread-safe: concurrent callers share one server.

    Raises:
        WeightsNotInstalledError: The model is not installed.
        ChecksumMismatchError: The file is corrupted; it is not loaded.
        NoFreePortError: No port could be bound.
        ModelLoadError: llama.cpp could not load the file.
    """
    with _lock:
        server = _servers.get(model.name)
        if server is None:
            server = _servers[model.name] = LlamaServer(installed_path(model), alias=model.name)
        return server


def running_servers() -> list[LlamaServer]:
    """Return the servers running now (for diagnostics and benchmarks)."""
    with _lock:
        return list(_servers.values())


def shutdown() -> None:
    """Stop every local model server of this process; safe to call more than once.

    A chat model's next call starts a fresh server and points the model at it.
    """
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.close()


def _loopback_port_available() -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        try:
            probe.bind((HOST, 0))
        except OSError:
            return False
    return True


atexit.register(shutdown)
