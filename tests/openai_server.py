"""A small OpenAI-compatible chat server on 127.0.0.1, for tests that need real HTTP.

It answers ``POST /v1/chat/completions`` (plain and streamed), ``GET /v1/models``,
counts the calls per model, and keeps the requests it received.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], str]
Fault = Callable[["_Handler", dict[str, Any], int], bool]
"""Called with the handler, the request and its call number for the model (from 1);
returns True when it has answered the request itself (see ``tests.fault_server``)."""


def echo_reply(request: dict[str, Any]) -> str:
    """Answer with the model's name and the last message's text."""
    return f"{request['model']} says: {request['messages'][-1]['content']}"


class FakeOpenAIServer(ThreadingHTTPServer):
    """The server; ``url`` is its ``/v1`` base URL."""

    daemon_threads = True

    def __init__(self, reply: Reply = echo_reply, latency: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply = reply
        self.latency = latency
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.usages: list[dict[str, int]] = []  # the usage reported for each answer
        self.lock = threading.Lock()
        self.fault: Fault | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send_json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.calls[request["model"]] += 1
            self.server.requests.append(request)
            self.server.authorizations.append(self.headers.get("Authorization", ""))
            number = self.server.calls[request["model"]]
        if self.server.fault is not None and self.server.fault(self, request, number):
            return
        time.sleep(self.server.latency)
        text = self.server.reply(request)
        prompt_tokens = sum(len(str(m["content"]).split()) for m in request["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        }
        with self.server.lock:
            self.server.usages.append(usage)
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": request["model"]}
        if not request.get("stream"):
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._send_json(
                200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in _chunks(text, usage, request):
            self.wfile.write(f"data: {json.dumps({**base, **chunk})}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def _chunks(text: str, usage: dict[str, int], request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word if i == len(words) - 1 else word + " "
        delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
        yield {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
    yield {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    if request.get("stream_options", {}).get("include_usage"):
        yield {"object": "chat.completion.chunk", "choices": [], "usage": usage}


@contextmanager
def serve(reply: Reply = echo_reply, latency: float = 0.0) -> Iterator[FakeOpenAIServer]:
    """Run a :class:`FakeOpenAIServer` in a thread for the duration of the block."""
    server = FakeOpenAIServer(reply, latency)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
