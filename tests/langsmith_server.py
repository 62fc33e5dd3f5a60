"""A stand-in for the LangSmith API on 127.0.0.1 that captures the runs a client sends.

The LangSmith client sends run creations and updates either as JSON to
``POST /runs/batch`` or as ``multipart/form-data`` to ``POST /runs/multipart``
(parts named ``post.<id>``, ``post.<id>.inputs``, ``patch.<id>.outputs``, ...), the
latter zstd-compressed when the client compresses. Both are decoded here; every raw
body is kept too, so a test can search the bytes that crossed the wire.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.loopback import running


class FakeLangSmithServer(ThreadingHTTPServer):
    """The server; ``url`` is what ``LANGSMITH_ENDPOINT`` should be set to."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self._runs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run received, by id, with its creation and later updates merged."""
        with self.lock:
            return {run_id: dict(run) for run_id, run in self._runs.items()}

    def record(self, operation: str, run: dict[str, Any]) -> None:
        """Merge one run creation or update into :attr:`runs`."""
        run_id = str(run["id"])
        with self.lock:
            merged = self._runs.setdefault(run_id, {})
            for key, value in run.items():
                if value is not None or key not in merged:
                    merged[key] = value


class _Handler(BaseHTTPRequestHandler):
    server: FakeLangSmithServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/info"):
            # No batch-ingest flags: the client picks its defaults.
            self._send_json(200, {"version": "fake", "batch_ingest_config": {}})
        else:
            self._send_json(404, {"detail": "not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "zstd":
            from langsmith._internal._compressed_traces import (  # type: ignore[attr-defined]
                zstd,
            )

            body = zstd.ZstdDecompressor().decompressobj().decompress(body)
        with self.server.lock:
            self.server.bodies.append(body)
            self.server.paths.append(self.path)
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/runs/batch"):
            batch = json.loads(body)
            for operation in ("post", "patch"):
                for run in batch.get(operation) or []:
                    self.server.record(operation, run)
        elif path.endswith("/runs/multipart"):
            self._multipart(body)
        elif path.endswith("/runs"):
            self.server.record("post", json.loads(body))
        self._send_json(202, {})

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.bodies.append(body)
            self.server.paths.append(self.path)
        run = json.loads(body)
        run["id"] = self.path.rstrip("/").rsplit("/", 1)[-1]
        self.server.record("patch", run)
        self._send_json(202, {})

    def _multipart(self, body: bytes) -> None:
        header = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(header + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if not isinstance(name, str) or not isinstance(payload, bytes):
                continue
            operation, run_id, *field = name.split(".")
            if operation not in ("post", "patch"):
                continue  # feedback and attachments are not runs
            value = json.loads(payload)
            run = {"id": run_id, field[0]: value} if field else {**value, "id": run_id}
            self.server.record(operation, run)


@contextmanager
def serve() -> Iterator[FakeLangSmithServer]:
    """Run a :class:`FakeLangSmithServer` in a thread for the duration of the block."""
    with running(FakeLangSmithServer()) as server:
        yield server
