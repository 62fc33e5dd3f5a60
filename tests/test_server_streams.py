"""``moa serve`` against upstreams that fail as real ones do, and clients that misbehave.

One ``moa serve`` subprocess (one run at a time, a one-second body timeout) serves
MoAs whose agents call the loopback fault server; every test uses its own
aggregator model, so call numbers (which pick the faults) start at 1 in each.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fault_server import Fault, dropped_after, fault_server, malformed_after, slow
from tests.server_process import Served, serve_configs

BODY_TIMEOUT_S = 1.0
AGGREGATORS = ("agg-slow", "agg-drop", "agg-drop-raw", "agg-malformed", "agg-early", "agg-plain")
WORDS = 40


def _reply(request: dict[str, Any]) -> str:
    if request["model"] == "agg-slow":
        return " ".join(f"w{i}" for i in range(WORDS))
    return f"{request['model']} says: {request['messages'][-1]['content']}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("serve-streams")
    table: dict[str, dict[int, Fault]] = {
        # The first attempt streams a few words, then fails; the retry is whole.
        "agg-drop": {1: dropped_after(3, token_delay=0.05)},
        "agg-drop-raw": {1: dropped_after(3, token_delay=0.05)},
        "agg-malformed": {1: malformed_after(3, token_delay=0.05)},
        # The first attempt fails before any word; the retry is whole.
        "agg-early": {1: dropped_after(0)},
    }
    always: dict[str, Fault] = {"agg-slow": slow(0.2)}  # every call

    def plan(model: str, number: int) -> Fault | None:
        return table.get(model, {}).get(number) or always.get(model)

    with fault_server(plan, reply=_reply) as upstream:
        agent = {"model": "openai:proposer", "base_url": upstream.url}
        configs = [
            {
                "name": aggregator.replace("agg", "moa"),
                "layers": [[agent]],
                "aggregator": {"model": f"openai:{aggregator}", "base_url": upstream.url},
                "backoff_s": 0.01,
                "max_backoff_s": 0.05,
            }
            for aggregator in AGGREGATORS
        ]
        args = ["--max-concurrent", "1", "--body-timeout", str(BODY_TIMEOUT_S)]
        with serve_configs(upstream, configs, directory, *args) as served:
            yield served


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def _post(setup: Served, content: bytes | str) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return httpx.post(f"{setup.moa.url}/chat/completions", content=content, headers=headers)


def _wait_for_a_free_slot(setup: Served, model: str) -> httpx.Response:
    """Ask ``model`` until it is not answered 429 (the server frees a slot once the
    run's model calls have stopped), for at most two seconds."""
    body = {"model": model, "messages": _user("Next?")}
    deadline = time.monotonic() + 2
    while True:
        response = httpx.post(f"{setup.moa.url}/chat/completions", json=body, timeout=30)
        if response.status_code != 429 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_a_client_that_hangs_up_mid_stream_cancels_the_upstream_stream(setup: Served) -> None:
    body = {"model": "moa-slow", "messages": _user("Long answer?"), "stream": True}
    for hung_up in range(1, 4):
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{setup.moa.url}/chat/completions", json=body) as response,
        ):
            assert response.status_code == 200
            for line in response.iter_lines():
                if '"content": "w0 "' in line:
                    break
        # The aggregator's upstream stream is closed long before its 40 words went out.
        assert setup.upstream.wait_for(
            lambda n=hung_up: len(setup.upstream.closed_by_client("agg-slow")) == n, timeout=5
        ), setup.upstream.streams
        assert setup.upstream.closed_by_client("agg-slow")[-1].events < WORDS / 2
        # With one run at a time, the next request is taken.
        assert _wait_for_a_free_slot(setup, "moa-plain").status_code == 200
    assert not [
        s for s in setup.upstream.streams if s.model == "agg-slow" and s.outcome != "client_closed"
    ]


def _stream_until_error(setup: Served, model: str) -> tuple[str, openai.APIError | None]:
    client = openai.OpenAI(base_url=setup.moa.url, api_key="unused", max_retries=0)
    pieces: list[str] = []
    try:
        stream = client.chat.completions.create(model=model, messages=_user("Hi"), stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    except openai.APIError as error:
        return "".join(pieces), error
    return "".join(pieces), None


@pytest.mark.parametrize(
    ("model", "aggregator"), [("moa-drop", "agg-drop"), ("moa-malformed", "agg-malformed")]
)
def test_an_aggregator_stream_failing_after_tokens_ends_with_an_error_event(
    setup: Served, model: str, aggregator: str
) -> None:
    text, error = _stream_until_error(setup, model)
    # What went out is the start of the first attempt's answer, never two spliced.
    assert error is not None, f"the stream ended without an error: {text!r}"
    assert text and f"{aggregator} says: Hi".startswith(text)
    assert "\n" not in error.message and "Traceback" not in error.message
    assert isinstance(error.body, dict) and error.body.get("type")


def test_the_error_event_is_the_last_event(setup: Served) -> None:
    body = {"model": "moa-drop-raw", "messages": _user("Hi"), "stream": True}
    with httpx.stream(
        "POST", f"{setup.moa.url}/chat/completions", json=body, timeout=30
    ) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    last = json.loads(events[-1])
    assert set(last) == {"error"}
    assert {"message", "type", "param", "code"} <= set(last["error"])
    assert all("error" not in json.loads(e) for e in events[:-1])
    assert "[DONE]" not in events


def test_a_failure_before_any_token_is_retried_into_a_whole_answer(setup: Served) -> None:
    text, error = _stream_until_error(setup, "moa-early")
    assert error is None
    assert text == "agg-early says: Hi"
    assert setup.upstream.calls["agg-early"] == 2


def test_a_body_nested_too_deeply_is_400(setup: Served) -> None:
    for depth in (100, 5_000):
        messages = "[" * depth + "]" * depth
        response = _post(setup, f'{{"model": "moa-plain", "messages": {messages}}}')
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert "nested more than 64 levels deep" in error["message"]
        assert error["type"] == "invalid_request_error"


def test_a_lone_surrogate_is_400_naming_messages(setup: Served) -> None:
    calls = sum(setup.upstream.calls.values())
    body = '{"model": "moa-plain", "messages": [{"role": "user", "content": "\\ud800x"}]}'
    response = _post(setup, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "messages"
    assert "not valid Unicode" in error["message"]
    assert sum(setup.upstream.calls.values()) == calls


def test_a_body_sent_too_slowly_is_408(setup: Served) -> None:
    body = json.dumps({"model": "moa-plain", "messages": _user("Slow body?")}).encode()
    url = httpx.URL(setup.moa.url)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.host, url.port)) as sock:
        sock.settimeout(10)
        sock.sendall(head + body[: len(body) // 2])
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    waited = time.monotonic() - started
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 408"), answer
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_timeout"
    assert BODY_TIMEOUT_S * 0.9 <= waited < BODY_TIMEOUT_S + 5
