"""A small OpenAI-compatible chat server on 127.0.0.1, for tests that need real HTTP.

It answers ``POST /v1/chat/completions`` (plain and streamed), ``GET /v1/models``,
counts the calls per model, and keeps the requests it received.

It behaves like real servers (OpenAI, vLLM, Ollama, llama.cpp) rather than kinder:
connections are kept alive after plain and streamed answers alike (a stream is
sent with chunked transfer encoding, one HTTP chunk per SSE event, so its end
needs no closed connection), and an answer streams one word per event. A
:class:`StreamShape` makes a stream slow, stall, break off or send a garbled event;
``tests.fault_server`` picks one per call. The server logs every stream's outcome
in :attr:`FakeOpenAIServer.streams`, so a test can tell a stream the client closed
early from one that ran to its end. Requests with ``tools`` or a ``response_format``
are answered as providers do (``tests.tool_replies``): with tool calls, plain or
streamed as OpenAI streams them, or with a JSON object.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests import tool_replies
from tests.loopback import running

Reply = Callable[[dict[str, Any]], str]
Fault = Callable[["_Handler", dict[str, Any], int], bool]
"""Called with the handler, the request and its call number for the model (from 1);
returns True when it has answered the request itself (see ``tests.fault_server``)."""


def echo_reply(request: dict[str, Any]) -> str:
    """Answer with the model's name and the last message's text."""
    return f"{request['model']} says: {request['messages'][-1]['content']}"


@dataclass(frozen=True)
class StreamShape:
    """How one answer goes out; the default is a healthy stream.

    Events are counted from the first ``data:`` line (one word of the answer each,
    then the finish event, the usage event if asked for, and ``[DONE]``).

    Attributes:
        token_delay: Seconds before each event (a slow model).
        drop_after: Close the connection, unfinished, after this many events.
        malformed_after: Send a ``data:`` line of broken JSON after this many events
            (the stream then goes on and ends properly).
        stall_after: Send nothing for ``stall_s`` seconds after this many events.
        stall_s: How long the stall lasts.
    """

    token_delay: float = 0.0
    drop_after: int | None = None
    malformed_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 0.0


@dataclass(frozen=True)
class StreamLog:
    """What became of one streamed answer.

    Attributes:
        model: The requested model.
        number: The call's number for that model (from 1).
        events: ``data:`` lines sent.
        outcome: ``finished`` (sent to its end), ``client_closed`` (the client
            closed the connection before the end) or ``dropped`` (the server broke
            it off, as a fault).
        started: ``time.monotonic()`` when the stream began.
        ended: ``time.monotonic()`` when it ended.
    """

    model: str
    number: int
    events: int
    outcome: str
    started: float
    ended: float


class ClientClosed(Exception):
    """The client closed the connection while the server was answering."""


class FakeOpenAIServer(ThreadingHTTPServer):
    """The server; ``url`` is its ``/v1`` base URL.

    Attributes:
        reply: Makes the answer's text from the request.
        latency: Seconds before each answer starts.
        keep_alive: Keep connections open after an answer (as real servers do);
            False closes each after its answer and streams without chunked encoding.
        shape: How every answer streams unless a fault says otherwise.
        idle_timeout: Close a kept-alive connection idle this long (uvicorn, and so
            vLLM, closes after 5 s); None keeps it open until the client closes it.
        calls: Requests per model.
        requests: Every request body, in order of arrival.
        connections: TCP connections accepted (fewer than requests when kept alive).
        streams: The outcome of every streamed answer, in order of ending.
        fault_message: The message of injected HTTP errors (``tests.fault_server``),
            e.g. one that echoes an API key as some providers' 401s do; None for
            ``injected <status>``.
        arguments: The arguments of the tool calls it answers with, from the tool's
            name and the request; None builds them from the tool's schema.
    """

    daemon_threads = True

    def __init__(
        self,
        reply: Reply = echo_reply,
        latency: float = 0.0,
        *,
        keep_alive: bool = True,
        shape: StreamShape | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply = reply
        self.latency = latency
        self.keep_alive = keep_alive
        self.shape = shape or StreamShape()
        self.idle_timeout = idle_timeout
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.usages: list[dict[str, int]] = []  # the usage reported for each answer
        self.connections = 0
        self.streams: list[StreamLog] = []
        self.lock = threading.Lock()
        self.fault: Fault | None = None
        self.fault_message: str | None = None
        self.arguments: tool_replies.Arguments | None = None
        self._open: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def write_config(self, path: Path, name: str) -> Path:
        """Write a MoA config to ``path``: proposers ``alpha`` and ``beta`` and the
        aggregator ``omega``, all calling this server."""
        agent = {"base_url": self.url}
        config = {
            "name": name,
            "layers": [[{"model": "openai:alpha", **agent}, {"model": "openai:beta", **agent}]],
            "aggregator": {"model": "openai:omega", **agent},
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def closed_by_client(self, model: str | None = None) -> list[StreamLog]:
        """Return the streams the client closed before their end, of one model or all."""
        with self.lock:
            return [
                s for s in self.streams if s.outcome == "client_closed" and model in (None, s.model)
            ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Poll ``predicate`` until it holds or ``timeout`` seconds pass; return it."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close_connections(self) -> None:
        """Shut every open connection, as a stopping server does."""
        with self.lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        """Shut the open connections, then close the listening socket."""
        self.close_connections()
        super().server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.server._open.add(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # the client reset a kept-alive connection: not an error
            self.close_connection = True

    def finish(self) -> None:
        with self.server.lock:
            self.server._open.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if not self.server.keep_alive:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.write(data)

    def do_GET(self) -> None:
        self._send_json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.calls[request["model"]] += 1
            self.server.requests.append(request)
            self.server.authorizations.append(self.headers.get("Authorization", ""))
            number = self.server.calls[request["model"]]
        self.number = number
        try:
            if self.server.fault is not None and self.server.fault(self, request, number):
                return
            time.sleep(self.server.latency)
            text = tool_replies.json_reply(request, self.server.reply(request))
            self.answer(request, text, self.server.shape)
        except (ClientClosed, OSError):  # the client went away
            self.close_connection = True

    def answer(
        self,
        request: dict[str, Any],
        text: str,
        shape: StreamShape | None = None,
        *,
        completion_id: str = "chatcmpl-fake",
    ) -> None:
        """Answer ``request`` with ``text``, streamed as ``shape`` says if it asked to be.

        A request with tools may be answered with tool calls instead (see
        ``tests.tool_replies``). A plain answer ignores ``shape``. The usage sent is
        recorded in ``usages``.

        Raises:
            ClientClosed: The client closed the connection before the end.
        """
        shape = shape or StreamShape()
        call_id = f"call_{request['model']}_{self.number}"
        calls = tool_replies.tool_calls(request, call_id, self.server.arguments)
        said = " ".join([text] if not calls else [c["function"]["arguments"] for c in calls])
        prompt_tokens = sum(len(str(m.get("content")).split()) for m in request["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(said.split()),
            "total_tokens": prompt_tokens + len(said.split()),
        }
        with self.server.lock:
            self.server.usages.append(usage)
        base = {"id": completion_id, "created": int(time.time()), "model": request["model"]}
        if not request.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message = {"role": "assistant", "content": None, "tool_calls": calls}
            finish = "tool_calls" if calls else "stop"
            choice = {"index": 0, "message": message, "finish_reason": finish}
            self._send_json(
                200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
            return
        chunks = _chunks(text, usage, request, calls)
        events = [json.dumps({**base, **chunk}) for chunk in chunks]
        self.stream(request, [*events, "[DONE]"], shape)

    def stream(self, request: dict[str, Any], events: list[str], shape: StreamShape) -> None:
        """Send ``events`` as the ``data:`` lines of a 200 event stream.

        Raises:
            ClientClosed: The client closed the connection before the end.
        """
        started = time.monotonic()
        sent = 0
        outcome = "client_closed"
        try:
            self.start_stream()
            for event in events:
                if shape.drop_after == sent:
                    self.drop()
                    outcome = "dropped"
                    return
                if shape.malformed_after == sent:
                    self.send_event('{"choices": [{"delta": {"content": "tru')
                if shape.stall_after == sent:
                    self.pause(shape.stall_s)
                self.pause(shape.token_delay)
                self.send_event(event)
                sent += 1
            self.end_stream()
            outcome = "finished"
        finally:
            log = StreamLog(request["model"], self.number, sent, outcome, started, time.monotonic())
            with self.server.lock:
                self.server.streams.append(log)

    def start_stream(self) -> None:
        """Send the status line and headers of a 200 event stream."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if self.server.keep_alive:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def send_event(self, data: str) -> None:
        """Send one ``data:`` line (in its own HTTP chunk when kept alive).

        Raises:
            ClientClosed: The client has closed the connection.
        """
        payload = f"data: {data}\n\n".encode()
        if self.server.keep_alive:
            payload = b"%x\r\n%s\r\n" % (len(payload), payload)
        self.write(payload)

    def end_stream(self) -> None:
        """End the stream: the last chunk when kept alive, else close the connection."""
        if self.server.keep_alive:
            self.write(b"0\r\n\r\n")

    def write(self, data: bytes) -> None:
        """Write to the client.

        Raises:
            ClientClosed: The client has closed the connection.
        """
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as error:  # BrokenPipeError, ConnectionResetError
            raise ClientClosed from error

    def drop(self) -> None:
        """Close the connection at once, whatever was sent."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def pause(self, seconds: float) -> None:
        """Wait ``seconds``, watching the connection so a client that closes it is seen.

        Raises:
            ClientClosed: The client closed the connection meanwhile.
        """
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable and self.client_gone():
                raise ClientClosed

    def client_gone(self) -> bool:
        """Whether the client closed its end (it sends nothing while it waits)."""
        try:
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


def _chunks(
    text: str, usage: dict[str, int], request: dict[str, Any], calls: list[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    for delta in tool_replies.call_deltas(calls) if calls else _word_deltas(text):
        yield {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
    finish = "tool_calls" if calls else "stop"
    yield {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
    }
    if request.get("stream_options", {}).get("include_usage"):
        yield {"object": "chat.completion.chunk", "choices": [], "usage": usage}


def _word_deltas(text: str) -> Iterator[dict[str, Any]]:
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word if i == len(words) - 1 else word + " "
        yield {"role": "assistant", "content": piece} if i == 0 else {"content": piece}


@contextmanager
def serve(
    reply: Reply = echo_reply,
    latency: float = 0.0,
    *,
    keep_alive: bool = True,
    shape: StreamShape | None = None,
    idle_timeout: float | None = None,
) -> Iterator[FakeOpenAIServer]:
    """Run a :class:`FakeOpenAIServer` in a thread for the duration of the block."""
    server = FakeOpenAIServer(
        reply, latency, keep_alive=keep_alive, shape=shape, idle_timeout=idle_timeout
    )
    with running(server):
        yield server
