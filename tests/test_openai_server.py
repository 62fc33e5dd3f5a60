"""The loopback OpenAI-compatible test server behaves as real servers do: it keeps
connections alive, streams in chunks, and fails mid-stream when told to."""

from __future__ import annotations

import itertools
import json
import socket
import time
from typing import Any

import httpx
import openai
import pytest

from tests.fault_server import (
    SERVER_ERROR,
    dropped_after,
    fault_server,
    malformed_after,
    slow,
    stalled_after,
)
from tests.openai_server import StreamShape, serve

QUESTION = "one two three four five"


def _body(model: str = "m", stream: bool = True) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": QUESTION}], "stream": stream}


def _events(client: httpx.Client, url: str, body: dict[str, Any]) -> list[str]:
    with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        assert response.status_code == 200
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_connections_are_kept_alive_and_streams_are_chunked() -> None:
    with serve() as server, httpx.Client() as client:
        for _ in range(2):
            plain = client.post(f"{server.url}/chat/completions", json=_body(stream=False))
            assert plain.json()["choices"][0]["message"]["content"] == f"m says: {QUESTION}"
            with client.stream("POST", f"{server.url}/chat/completions", json=_body()) as response:
                assert response.headers["transfer-encoding"] == "chunked"
                assert "connection" not in response.headers
                events = [line for line in response.iter_lines() if line.startswith("data: ")]
            assert events[-1] == "data: [DONE]"
            words = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:-2]]
            assert "".join(words) == f"m says: {QUESTION}" and len(words) == 7
        assert len(server.requests) == 4
        assert server.connections == 1
        # A stream is logged just after its last byte went out.
        assert server.wait_for(lambda: len(server.streams) == 2)
        assert [s.outcome for s in server.streams] == ["finished", "finished"]


def test_keep_alive_can_be_turned_off() -> None:
    with serve(keep_alive=False) as server, httpx.Client() as client:
        for _ in range(2):
            with client.stream("POST", f"{server.url}/chat/completions", json=_body()) as response:
                assert response.headers["connection"] == "close"
                assert list(response.iter_lines())
        assert server.connections == 2


def test_a_stream_dropped_after_n_events_breaks_off() -> None:
    with fault_server({"m": {1: dropped_after(2)}}) as server, httpx.Client() as client:
        received = []
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream("POST", f"{server.url}/chat/completions", json=_body()) as response,
        ):
            received.extend(line for line in response.iter_lines() if line)
        assert len(received) == 2
        # The retry is whole.
        assert _events(client, server.url, _body())[-1] == "[DONE]"
        assert server.wait_for(lambda: len(server.streams) == 2)
        assert [(s.outcome, s.events) for s in server.streams] == [("dropped", 2), ("finished", 9)]
        assert server.fault is not None
        assert server.fault.injected == [("m", 1, "drop_after")]  # type: ignore[attr-defined]


def test_a_malformed_event_after_n_events() -> None:
    with fault_server({"m": {1: malformed_after(3)}}) as server, httpx.Client() as client:
        events = _events(client, server.url, _body())
        with pytest.raises(json.JSONDecodeError):
            json.loads(events[3])
        assert all(json.loads(e) for e in events[:3])
        assert events[-1] == "[DONE]"
        # The OpenAI client raises on it.
        sdk = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        server.fault.plan = {"m": {2: malformed_after(1)}}  # type: ignore[union-attr]
        with pytest.raises(json.JSONDecodeError):
            list(sdk.chat.completions.create(model="m", messages=_body()["messages"], stream=True))


def test_a_stream_stalls_after_n_events_then_ends() -> None:
    with fault_server({"m": {1: stalled_after(2, 0.5)}}) as server, httpx.Client() as client:
        arrivals = []
        with client.stream("POST", f"{server.url}/chat/completions", json=_body()) as response:
            for line in response.iter_lines():
                if line:
                    arrivals.append(time.monotonic())
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert gaps[1] >= 0.45 and gaps[1] == max(gaps)
        assert server.wait_for(lambda: len(server.streams) == 1)
        assert server.streams[0].outcome == "finished"


def test_a_slow_stream_and_a_client_that_closes_it_early() -> None:
    plan = {"m": {1: slow(0.05), 2: slow(0.5)}}
    with fault_server(plan) as server, httpx.Client() as client:
        started = time.monotonic()
        assert _events(client, server.url, _body())[-1] == "[DONE]"
        assert time.monotonic() - started >= 8 * 0.05
        with client.stream("POST", f"{server.url}/chat/completions", json=_body()) as response:
            next(response.iter_lines())
        # The server sees the close while it waits to send the next event.
        assert server.wait_for(lambda: bool(server.closed_by_client("m")), timeout=2)
        (closed,) = server.closed_by_client()
        assert (closed.number, closed.events) == (2, 1)
        assert closed.ended - closed.started < 3


def test_faults_by_call_number_then_answers() -> None:
    plan = {"m": {1: SERVER_ERROR}}
    with fault_server(plan) as server:
        sdk = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=1)
        answer = sdk.chat.completions.create(model="m", messages=_body()["messages"])
        assert answer.choices[0].message.content == f"m says: {QUESTION}"
        assert server.calls["m"] == 2


def test_a_plain_request_gets_the_plain_form_of_a_stream_fault() -> None:
    plan = {"m": {1: dropped_after(2), 2: stalled_after(0, 0.3)}}
    with fault_server(plan) as server, httpx.Client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(f"{server.url}/chat/completions", json=_body(stream=False))
        started = time.monotonic()
        reply = client.post(f"{server.url}/chat/completions", json=_body(stream=False))
        assert reply.status_code == 200 and time.monotonic() - started >= 0.3


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    with (
        serve(idle_timeout=0.2, shape=StreamShape()) as server,
        socket.create_connection(server.server_address[:2]) as sock,
    ):
        sock.settimeout(5)
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server
        assert time.monotonic() - started < 2
