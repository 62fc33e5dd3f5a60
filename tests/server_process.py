"""Run ``moa serve`` as a real subprocess on a free loopback port, for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.openai_server import FakeOpenAIServer


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
        wait_until_up(process, f"http://127.0.0.1:{port}/health", log=log, timeout=timeout)
        yield served
    finally:
        stop(process, timeout=10)


def wait_until_up(
    process: subprocess.Popen[bytes], health_url: str, *, log: Path, timeout: float
) -> None:
    """Wait until ``health_url`` answers 200.

    Raises:
        RuntimeError: The process exited, or did not answer within ``timeout``
            seconds; the message holds its log.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            code = process.returncode
            raise RuntimeError(f"{process.args!r} exited with {code}:\n{log.read_text()}")
        try:
            if httpx.get(health_url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.args!r} did not start in {timeout} s:\n{log.read_text()}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes], *, timeout: float) -> None:
    """Terminate ``process``; kill it if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Served:
    """A running ``moa serve`` and the fake upstream its agents call."""

    moa: ServedMoA
    upstream: FakeOpenAIServer


@contextmanager
def serve_configs(
    upstream: FakeOpenAIServer, configs: Iterable[Mapping[str, Any]], folder: Path, *args: str
) -> Iterator[Served]:
    """Serve MoA configs with ``moa serve``; stop it when the block ends.

    Args:
        upstream: The fake server the configs' agents call.
        configs: The configs, each written to ``folder/<name>.yaml``.
        folder: Where the configs and ``serve.log`` go.
        args: More options of ``moa serve``.
    """
    options: list[str] = []
    for config in configs:
        path = folder / f"{config['name']}.yaml"
        path.write_text(yaml.safe_dump(dict(config)))
        options += ["--config", str(path)]
    with moa_serve([*options, *args], log=folder / "serve.log") as moa:
        yield Served(moa, upstream)
