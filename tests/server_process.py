"""Run ``moa serve`` as a real subprocess on a free loopback port, for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """Return a TCP port nothing listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_command(*args: str) -> list[str]:
    """Return the command line of ``moa serve`` with ``args``."""
    return [sys.executable, "-m", "moa_graph.cli.app", "serve", *args]


@dataclass
class ServedMoA:
    """A running ``moa serve``: its ``/v1`` URL, key and log file."""

    url: str
    api_key: str | None
    log: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def moa_serve(
    args: Sequence[str], *, log: Path, api_key: str | None = None, timeout: float = 60
) -> Iterator[ServedMoA]:
    """Start ``moa serve args --port P``; stop it when the block ends.

    The key goes through the environment (``MOA_API_KEY``), never the command line.
    """
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MOA_API_KEY", None)
    if api_key is not None:
        env["MOA_API_KEY"] = api_key
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command(*args, "--port", str(port)), env=env, stdout=out, stderr=out
        )
    served = ServedMoA(f"http://127.0.0.1:{port}/v1", api_key, log, process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                code = process.returncode
                raise RuntimeError(f"moa serve exited with {code}:\n{log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moa serve did not start in {timeout} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
