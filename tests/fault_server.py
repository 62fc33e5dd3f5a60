"""Fault injection for the loopback OpenAI-compatible server of ``tests.openai_server``.

A :class:`Faults` plan decides, per model and per call number, whether a request
gets a fault instead of an answer: 429 with ``Retry-After``, 500, 401, 400, a hang
past the client's timeout, a dropped connection, malformed JSON or empty content;
or a stream that fails part way, as real servers' do: one dropped after N events
(:func:`dropped_after`), one with a garbled event after N (:func:`malformed_after`),
one that stalls after N (:func:`stalled_after`), or one slow throughout
(:func:`slow`). The server counts every call it receives, faulty or not.

Example:
    with fault_server({"m1": {1: RATE_LIMITED, 2: SERVER_ERROR}}) as server:
        ...  # m1's first call gets a 429, its second a 500, its third an answer
    with fault_server({"agg": {1: dropped_after(3)}}) as server:
        ...  # agg's first stream breaks off after three events, its retry is whole
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.openai_server import (
    FakeOpenAIServer,
    Reply,
    StreamShape,
    _Handler,
    echo_reply,
    serve,
)


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    Attributes:
        kind: ``status`` (an HTTP error), ``hang`` (wait, then answer), ``drop``
            (close the connection unanswered), ``malformed`` (200 with broken
            JSON), ``empty`` (200 with empty content), or a stream's fault:
            ``drop_after``, ``malformed_after``, ``stall`` or ``slow`` (see
            ``shape``).
        status: The HTTP status of a ``status`` fault.
        retry_after: The ``Retry-After`` header of a ``status`` fault, if any.
        seconds: How long a ``hang`` waits before it answers.
        shape: How a stream's fault streams. A plain request gets the nearest
            plain fault: half a body then a closed connection (``drop_after``),
            broken JSON (``malformed_after``), or a late answer (``stall``,
            ``slow``).
    """

    kind: str
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    shape: StreamShape | None = None


RATE_LIMITED = Fault("status", status=429, retry_after="1")
SERVER_ERROR = Fault("status", status=500)
UNAUTHORIZED = Fault("status", status=401)
BAD_REQUEST = Fault("status", status=400)
DROPPED = Fault("drop")
MALFORMED = Fault("malformed")
EMPTY = Fault("empty")


def hang(seconds: float) -> Fault:
    """A call that answers only after ``seconds`` (or never, if the client leaves)."""
    return Fault("hang", seconds=seconds)


def rate_limited(retry_after: str) -> Fault:
    """A 429 with the given ``Retry-After`` header."""
    return Fault("status", status=429, retry_after=retry_after)


def dropped_after(events: int, token_delay: float = 0.0) -> Fault:
    """A stream whose connection is closed, unfinished, after ``events`` events.

    ``token_delay`` spaces the events, so a client reads them before the drop.
    """
    return Fault("drop_after", shape=StreamShape(token_delay, drop_after=events))


def malformed_after(events: int, token_delay: float = 0.0) -> Fault:
    """A stream that sends a ``data:`` line of broken JSON after ``events`` events."""
    return Fault("malformed_after", shape=StreamShape(token_delay, malformed_after=events))


def stalled_after(events: int, seconds: float, token_delay: float = 0.0) -> Fault:
    """A stream that sends nothing for ``seconds`` after ``events`` events, then ends."""
    return Fault("stall", shape=StreamShape(token_delay, stall_after=events, stall_s=seconds))


def slow(seconds_per_event: float) -> Fault:
    """A stream that sends one event every ``seconds_per_event``."""
    return Fault("slow", shape=StreamShape(token_delay=seconds_per_event))


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


_BROKEN_JSON = '{"id": "x", "choices": [{"message": {"content": "tru'


def _inject(handler: _Handler, request: dict[str, Any], fault: Fault) -> None:
    """Answer ``request`` with ``fault``.

    Raises:
        ClientClosed: The client closed the connection meanwhile.
    """
    streamed = bool(request.get("stream"))
    text = "" if fault.kind in ("status", "drop", "malformed", "empty") else None
    text = handler.server.reply(request) if text is None else text
    if fault.kind == "status":
        message = handler.server.fault_message or f"injected {fault.status}"
        body = json.dumps({"error": {"message": message, "type": "fault"}})
        handler.send_response(fault.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        if fault.retry_after is not None:
            handler.send_header("Retry-After", fault.retry_after)
        handler.end_headers()
        handler.write(body.encode())
    elif fault.kind == "drop":
        handler.drop()
    elif fault.kind == "malformed" and streamed:
        handler.stream(request, [_BROKEN_JSON], StreamShape())
    elif fault.kind in ("malformed", "malformed_after") and not streamed:
        _send_raw(handler, _BROKEN_JSON.encode())
    elif fault.kind == "drop_after" and not streamed:
        data = json.dumps({"id": "x", "choices": [{"message": {"content": text}}]}).encode()
        _send_raw(handler, data[: len(data) // 2], length=len(data))
        handler.drop()
    elif fault.kind in ("stall", "slow") and not streamed:
        shape = fault.shape or StreamShape()
        handler.pause(shape.stall_s + shape.token_delay * (len(text.split()) + 1))
        handler.answer(request, text, completion_id="chatcmpl-fault")
    elif fault.kind in ("drop_after", "malformed_after", "stall", "slow"):
        handler.answer(request, text, fault.shape, completion_id="chatcmpl-fault")
    elif fault.kind == "empty":
        handler.answer(request, "", completion_id="chatcmpl-fault")
    elif fault.kind == "hang":
        handler.pause(fault.seconds)
        handler.answer(request, text, completion_id="chatcmpl-fault")
    else:
        raise ValueError(f"unknown fault kind {fault.kind!r}")


def _send_raw(handler: _Handler, body: bytes, length: int | None = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.write(body)


@contextmanager
def fault_server(
    plan: Plan, latency: float = 0.0, *, reply: Reply = echo_reply, keep_alive: bool = True
) -> Iterator[FakeOpenAIServer]:
    """Serve on 127.0.0.1 with the faults of ``plan``; ``server.fault.injected``
    lists ``(model, call_number, kind)`` of every fault sent."""
    with serve(reply, latency, keep_alive=keep_alive) as server:
        server.fault = Faults(plan)
        server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        yield server
