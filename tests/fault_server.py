"""Fault injection for the loopback OpenAI-compatible server of ``tests.openai_server``.

A :class:`Faults` plan decides, per model and per call number, whether a request
gets a fault instead of an answer: 429 with ``Retry-After``, 500, 401, 400, a hang
past the client's timeout, a dropped connection, malformed JSON or empty content.
The server counts every call it receives, faulty or not.

Example:
    with fault_server({"m1": {1: RATE_LIMITED, 2: SERVER_ERROR}}) as server:
        ...  # m1's first call gets a 429, its second a 500, its third an answer
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.openai_server import FakeOpenAIServer, _chunks, _Handler, serve


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    Attributes:
        kind: ``status`` (an HTTP error), ``hang`` (sleep, then answer), ``drop``
            (close the connection unanswered), ``malformed`` (200 with broken
            JSON) or ``empty`` (200 with empty content).
        status: The HTTP status of a ``status`` fault.
        retry_after: The ``Retry-After`` header of a ``status`` fault, if any.
        seconds: How long a ``hang`` sleeps before it answers.
    """

    kind: str
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0


RATE_LIMITED = Fault("status", status=429, retry_after="1")
SERVER_ERROR = Fault("status", status=500)
UNAUTHORIZED = Fault("status", status=401)
BAD_REQUEST = Fault("status", status=400)
DROPPED = Fault("drop")
MALFORMED = Fault("malformed")
EMPTY = Fault("empty")


def hang(seconds: float) -> Fault:
    """A call that answers only after ``seconds``."""
    return Fault("hang", seconds=seconds)


def rate_limited(retry_after: str) -> Fault:
    """A 429 with the given ``Retry-After`` header."""
    return Fault("status", status=429, retry_after=retry_after)


TRANSIENT = (RATE_LIMITED, SERVER_ERROR, DROPPED, MALFORMED, EMPTY)
"""Transient fault kinds, for random plans (hangs are added by the caller)."""


Plan = Mapping[str, Mapping[int, Fault]] | Callable[[str, int], Fault | None]


class Faults:
    """Which call gets which fault: a ``{model: {call_number: fault}}`` table, or a
    function of the model and the call number."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.injected: list[tuple[str, int, str]] = []

    def pick(self, model: str, number: int) -> Fault | None:
        if callable(self.plan):
            return self.plan(model, number)
        return self.plan.get(model, {}).get(number)

    def __call__(self, handler: _Handler, request: dict[str, Any], number: int) -> bool:
        fault = self.pick(request["model"], number)
        if fault is None:
            return False
        self.injected.append((request["model"], number, fault.kind))
        _inject(handler, request, fault)
        return True


def random_plan(rate: float, seed: int, hang_s: float) -> Callable[[str, int], Fault | None]:
    """Fault each call with probability ``rate``, mixing every transient kind."""
    kinds = (*TRANSIENT, hang(hang_s))

    def plan(model: str, number: int) -> Fault | None:
        rng = random.Random(f"{seed}:{model}:{number}")
        return rng.choice(kinds) if rng.random() < rate else None

    return plan


def _inject(handler: _Handler, request: dict[str, Any], fault: Fault) -> None:
    if fault.kind == "status":
        body = json.dumps({"error": {"message": f"injected {fault.status}", "type": "fault"}})
        handler.send_response(fault.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        if fault.retry_after is not None:
            handler.send_header("Retry-After", fault.retry_after)
        handler.end_headers()
        handler.wfile.write(body.encode())
    elif fault.kind == "drop":
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True
    elif fault.kind == "malformed":
        if request.get("stream"):
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.end_headers()
            handler.wfile.write(b'data: {"choices": [{"delta": {"content": "tru\n\n')
            handler.close_connection = True
        else:
            body = b'{"id": "x", "choices": [{"message": {"content": "tru'
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
    elif fault.kind == "empty":
        _answer(handler, request, "")
    elif fault.kind == "hang":
        time.sleep(fault.seconds)
        with contextlib.suppress(OSError):  # the client may have given up
            _answer(handler, request, handler.server.reply(request))
    else:
        raise ValueError(f"unknown fault kind {fault.kind!r}")


def _answer(handler: _Handler, request: dict[str, Any], text: str) -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1}
    base = {"id": "chatcmpl-fault", "created": int(time.time()), "model": request["model"]}
    if not request.get("stream"):
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        handler._send_json(
            200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
        )
        return
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    for chunk in _chunks(text, usage, request):
        handler.wfile.write(f"data: {json.dumps({**base, **chunk})}\n\n".encode())
    handler.wfile.write(b"data: [DONE]\n\n")
    handler.close_connection = True


@contextmanager
def fault_server(plan: Plan, latency: float = 0.0) -> Iterator[FakeOpenAIServer]:
    """Serve on 127.0.0.1 with the faults of ``plan``; ``server.fault.injected``
    lists ``(model, call_number, kind)`` of every fault sent."""
    with serve(latency=latency) as server:
        server.fault = Faults(plan)
        server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        yield server
