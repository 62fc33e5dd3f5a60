"""``moa serve`` answers only its own clients: no web page, no rebound name.

A real ``moa serve`` runs against the loopback fake OpenAI server, which counts
every call: a refused request must reach no model. The five requests of a page
attacking a loopback server (issue 25, point 4) are refused before the body is
read; local clients, an ``--allow-host`` name and an ``--allow-origin`` page get in.
The API key comes from ``MOA_API_KEY`` or ``--api-key-file``; ``--api-key`` works
but warns that the command line is public.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.datastructures import Headers
from typer.testing import CliRunner

from moa_graph.cli.app import app
from moa_graph.config.files import load_config
from moa_graph.errors import ConfigError
from moa_graph.server.app import create_app
from moa_graph.server.guard import ClientGuard, allowed_hosts, guard_middleware
from tests.fault_server import UNAUTHORIZED, fault_server
from tests.openai_server import FakeOpenAIServer, serve
from tests.server_process import ServedMoA, free_port, moa_serve, serve_command, serve_configs

UI = "http://localhost:3000"
EVIL = "https://evil.example"
API_KEY = "sk-moa-guard-0123456789-sentinel"
QUESTION = {"model": "fake-moa", "messages": [{"role": "user", "content": "Hi"}]}
BODY = json.dumps(QUESTION)
JSON = {"Content-Type": "application/json"}


@dataclass
class Setup:
    moa: ServedMoA
    upstream: FakeOpenAIServer
    config: Path

    @property
    def port(self) -> int:
        return int(self.moa.url.split(":")[-1].removesuffix("/v1"))

    @property
    def chat(self) -> str:
        return f"{self.moa.url}/chat/completions"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("guard")
    with serve() as upstream:
        agent = {"base_url": upstream.url}
        config = {
            "name": "fake-moa",
            "layers": [[{"model": "openai:alpha", **agent}]],
            "aggregator": {"model": "openai:gamma", **agent},
        }
        args = ["--allow-origin", UI, "--allow-host", "moa.test"]
        with serve_configs(upstream, [config], directory, *args) as served:
            yield Setup(served.moa, upstream, directory / "fake-moa.yaml")


HOST_REFUSED = (
    "the Host header '{host}' is not an address of this server; "
    "to answer it, start the server with --allow-host"
)
ORIGIN_REFUSED = (
    "the origin '{origin}' may not use this server; "
    "to let its pages in, start the server with --allow-origin"
)
NOT_JSON = "the request body must be sent as 'Content-Type: application/json'"
CODES = {421: "host_not_allowed", 403: "origin_not_allowed", 415: "unsupported_media_type"}
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
REBOUND = "evil.example:{port}"


REFUSAL_IDS = [
    "text-plain-from-evil",
    "form",
    "rebound-host",
    "json-from-evil",
    "preflight-from-evil",
    "text-plain",
    "json-seq",
    "multipart",
    "empty-content-type",
    "form-from-evil",
    "null-origin",
    "origin-with-path",
    "other-port-origin",
    "loopback-other-port",
    "loopback-no-port",
    "loopback-prefix",
    "allowed-host-prefix",
    "health-rebound",
    "models-from-evil",
    "allowed-origin-rebound",
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "content", "status", "message"),
    [
        # The five requests of a page attacking a loopback server.
        ("POST", "chat", {"Content-Type": "text/plain", "Origin": EVIL}, BODY, 403, ORIGIN_REFUSED),
        ("POST", "chat", FORM, "model=fake-moa", 415, NOT_JSON),
        ("POST", "chat", {**JSON, "Host": REBOUND}, BODY, 421, HOST_REFUSED),
        ("POST", "chat", {**JSON, "Origin": EVIL}, BODY, 403, ORIGIN_REFUSED),
        ("OPTIONS", "chat", {"Origin": EVIL, **PREFLIGHT}, None, 403, ORIGIN_REFUSED),
        # Their variants.
        ("POST", "chat", {"Content-Type": "text/plain"}, BODY, 415, NOT_JSON),
        ("POST", "chat", {"Content-Type": "application/json-seq"}, BODY, 415, NOT_JSON),
        (
            "POST",
            "chat",
            {"Content-Type": "multipart/form-data; boundary=x"},
            "--x--",
            415,
            NOT_JSON,
        ),
        ("POST", "chat", {"Content-Type": ""}, BODY, 415, NOT_JSON),
        ("POST", "chat", {**FORM, "Origin": EVIL}, "model=fake-moa", 403, ORIGIN_REFUSED),
        ("POST", "chat", {**JSON, "Origin": "null"}, BODY, 403, ORIGIN_REFUSED),
        ("POST", "chat", {**JSON, "Origin": UI + "/"}, BODY, 403, ORIGIN_REFUSED),
        ("POST", "chat", {**JSON, "Origin": "http://localhost:3001"}, BODY, 403, ORIGIN_REFUSED),
        ("POST", "chat", {**JSON, "Host": "localhost:1"}, BODY, 421, HOST_REFUSED),
        ("POST", "chat", {**JSON, "Host": "127.0.0.1"}, BODY, 421, HOST_REFUSED),
        (
            "POST",
            "chat",
            {**JSON, "Host": "127.0.0.1.evil.example:{port}"},
            BODY,
            421,
            HOST_REFUSED,
        ),
        ("POST", "chat", {**JSON, "Host": "moa.test.evil.example"}, BODY, 421, HOST_REFUSED),
        ("GET", "health", {"Host": REBOUND}, None, 421, HOST_REFUSED),
        ("GET", "models", {"Origin": EVIL}, None, 403, ORIGIN_REFUSED),
        ("OPTIONS", "chat", {"Host": REBOUND, "Origin": UI, **PREFLIGHT}, None, 421, HOST_REFUSED),
    ],
    ids=REFUSAL_IDS,
)
def test_a_request_not_from_a_client_is_refused_before_any_model_call(
    setup: Setup,
    method: str,
    path: str,
    headers: dict[str, str],
    content: str | None,
    status: int,
    message: str,
) -> None:
    headers = {name: value.format(port=setup.port) for name, value in headers.items()}
    message = message.format(host=headers.get("Host"), origin=headers.get("Origin"))
    calls = len(setup.upstream.requests)
    response = httpx.request(method, _url(setup, path), headers=headers, content=content)
    error = {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": CODES[status],
    }
    assert (response.status_code, response.json()) == (status, {"error": error})
    assert response.headers["content-type"] == "application/json"
    assert "access-control-allow-origin" not in response.headers
    assert len(setup.upstream.requests) == calls


def _url(setup: Setup, path: str) -> str:
    if path == "health":
        return f"{setup.moa.url.removesuffix('/v1')}/health"
    return f"{setup.moa.url}/{'chat/completions' if path == 'chat' else path}"


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "moa.test"]
)
def test_a_local_client_and_an_allowed_host_get_their_answer(setup: Setup, host: str) -> None:
    calls = len(setup.upstream.requests)
    headers = {"Host": host.format(port=setup.port)}
    response = httpx.post(setup.chat, json=QUESTION, headers=headers)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "gamma says: Hi"
    assert "access-control-allow-origin" not in response.headers
    assert len(setup.upstream.requests) == calls + 2


def test_json_with_parameters_and_any_case_is_json(setup: Setup) -> None:
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    response = httpx.post(setup.chat, content=BODY, headers=headers)
    assert response.json()["choices"][0]["message"]["content"] == "gamma says: Hi"


def test_a_request_without_a_host_is_refused(setup: Setup) -> None:
    with socket.create_connection(("127.0.0.1", setup.port)) as connection:
        connection.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        answer = b""
        while part := connection.recv(4096):
            answer += part
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 421 ")
    assert json.loads(body)["error"]["message"] == "the request has no Host header"


def test_an_allowed_host_is_answered_on_any_port_and_health_stays_up(setup: Setup) -> None:
    for host in ("moa.test:443", "MOA.test:8080", "127.0.0.1:{port}"):
        headers = {"Host": host.format(port=setup.port)}
        assert httpx.get(f"{setup.moa.url}/models", headers=headers).status_code == 200
    assert httpx.get(_url(setup, "health")).json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("base_url", "status"),
    [("http://localhost:1234", 200), ("http://[::1]", 200), ("http://moa.test", 421)],
)
async def test_the_app_answers_only_loopback_names_by_default(
    setup: Setup, base_url: str, status: int
) -> None:
    app = create_app({"fake-moa": load_config(setup.config)})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        assert (await client.get("/health")).status_code == status


def test_the_bound_address_and_loopback_names_are_answered_on_its_port() -> None:
    assert allowed_hosts("::1", 8000, ["moa.lan", "10.0.0.2:9000"]) == [
        "[::1]:8000",
        "localhost:8000",
        "127.0.0.1:8000",
        "moa.lan",
        "10.0.0.2:9000",
    ]
    hosts = allowed_hosts("0.0.0.0", 80, ["moa.lan", "10.0.0.2:9000"])
    guard = guard_middleware(hosts, origins=())[0]
    assert guard.cls is ClientGuard
    client = ClientGuard(create_app({}), **guard.kwargs)
    answered = ["0.0.0.0", "localhost", "LOCALHOST:80", "[::1]:80", "moa.lan:1", "10.0.0.2:9000"]
    refused = ["localhost:8000", "10.0.0.2", "10.0.0.2:90000", "moa.lan:", "[::1", "a b", ""]
    assert [h for h in answered if client.refusal(Headers({"host": h}))] == []
    assert [h for h in refused if not client.refusal(Headers({"host": h}))] == []


def test_an_allowed_origin_gets_its_preflight_answered(setup: Setup) -> None:
    asked = "authorization, content-type, x-stainless-os"
    headers = {"Origin": UI, **PREFLIGHT, "Access-Control-Request-Headers": asked}
    response = httpx.options(setup.chat, headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == UI
    assert response.headers["access-control-allow-methods"] == "GET, POST"
    assert response.headers["access-control-allow-headers"] == asked
    assert response.headers["access-control-max-age"] == "600"
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers
    # Chrome asks before a public page's request reaches a private address.
    private = {**headers, "Access-Control-Request-Private-Network": "true"}
    response = httpx.options(setup.chat, headers=private)
    assert response.headers["access-control-allow-private-network"] == "true"


def test_an_allowed_origin_reads_answers_streams_and_errors(setup: Setup) -> None:
    calls = len(setup.upstream.requests)
    headers = {"Origin": UI}
    response = httpx.post(setup.chat, json=QUESTION, headers=headers)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "gamma says: Hi"
    assert response.headers["access-control-allow-origin"] == UI
    assert response.headers["access-control-expose-headers"] == "X-MoA-Thread-Id, Retry-After"
    assert "Origin" in response.headers["vary"]
    streamed = httpx.post(setup.chat, json={**QUESTION, "stream": True}, headers=headers)
    assert streamed.headers["access-control-allow-origin"] == UI
    assert streamed.text.endswith("data: [DONE]\n\n")
    assert len(setup.upstream.requests) == calls + 4
    # Its errors are readable too, and say what went wrong.
    missing = httpx.post(setup.chat, json={**QUESTION, "model": "nope"}, headers=headers)
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == UI
    plain = httpx.post(setup.chat, content=BODY, headers={**headers, "Content-Type": "text/plain"})
    assert (plain.status_code, plain.json()["error"]["message"]) == (415, NOT_JSON)
    assert plain.headers["access-control-allow-origin"] == UI
    assert len(setup.upstream.requests) == calls + 4


def _served_with_key(setup: Setup, served: ServedMoA, key: str) -> None:
    """Check that ``served`` lets in only ``key``, which its log never shows."""
    calls = len(setup.upstream.requests)
    chat = f"{served.url}/chat/completions"
    assert httpx.post(chat, json=QUESTION).status_code == 401
    wrong = httpx.post(chat, json=QUESTION, headers={"Authorization": "Bearer sk-wrong"})
    assert wrong.json()["error"]["message"] == "incorrect API key"
    assert len(setup.upstream.requests) == calls
    answer = httpx.post(chat, json=QUESTION, headers={"Authorization": f"Bearer {key}"})
    assert answer.json()["choices"][0]["message"]["content"] == "gamma says: Hi"
    assert key not in served.log_text()


KEY_WARNING = (
    "warning: --api-key can be read by every user of this machine (ps, /proc/*/cmdline); "
    "set MOA_API_KEY or use --api-key-file instead"
)


def test_the_key_comes_from_the_environment(setup: Setup, tmp_path: Path) -> None:
    args = ["--config", str(setup.config)]
    with moa_serve(args, log=tmp_path / "serve.log", api_key=API_KEY) as served:
        _served_with_key(setup, served, API_KEY)
    assert KEY_WARNING not in served.log_text()


def test_the_key_comes_from_a_file(setup: Setup, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"{API_KEY}\n")
    args = ["--config", str(setup.config), "--api-key-file", str(key_file)]
    with moa_serve(args, log=tmp_path / "serve.log") as served:
        _served_with_key(setup, served, API_KEY)
    assert KEY_WARNING not in served.log_text()


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604])
def test_a_key_file_others_can_read_works_with_a_warning(
    setup: Setup, tmp_path: Path, mode: int
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"{API_KEY}\n")
    key_file.chmod(mode)
    args = ["--config", str(setup.config), "--api-key-file", str(key_file)]
    with moa_serve(args, log=tmp_path / "serve.log") as served:
        _served_with_key(setup, served, API_KEY)
    warning = (
        f"warning: the API key file {key_file} can be read by other users "
        f"(mode {mode:04o}); run `chmod 600 {key_file}`"
    )
    lines = served.log_text().splitlines()
    assert lines.count(warning) == (0 if mode == 0o600 else 1)


def test_a_key_from_a_file_is_redacted_like_one_from_the_environment(tmp_path: Path) -> None:
    """An upstream that quotes the server's key has it redacted, in the answer and the log."""
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY)
    with fault_server({"alpha": {1: UNAUTHORIZED}}) as upstream:
        upstream.fault_message = f"Incorrect API key provided: {API_KEY}"
        config = tmp_path / "moa.yaml"
        agent = {"base_url": upstream.url, "max_retries": 0}
        config.write_text(
            yaml.safe_dump(
                {
                    "name": "fake-moa",
                    "layers": [[{"model": "openai:alpha", **agent}]],
                    "aggregator": {"model": "openai:gamma", **agent},
                }
            )
        )
        args = ["--config", str(config), "--api-key-file", str(key_file)]
        with moa_serve(args, log=tmp_path / "serve.log") as served:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            reply = httpx.post(f"{served.url}/chat/completions", json=QUESTION, headers=headers)
        assert upstream.calls["alpha"] == 1
    assert reply.status_code == 502
    assert "Incorrect API key provided: [redacted]" in reply.json()["error"]["message"]
    assert API_KEY not in reply.text
    assert API_KEY not in served.log_text() and "[redacted]" in served.log_text()


def test_a_key_on_the_command_line_works_with_a_warning(setup: Setup, tmp_path: Path) -> None:
    key = "sk-moa-on-the-command-line"
    args = ["--config", str(setup.config), "--api-key", key]
    with moa_serve(args, log=tmp_path / "serve.log") as served:
        _served_with_key(setup, served, key)
        assert served.log_text().splitlines().count(KEY_WARNING) == 1


NOT_AN_ORIGIN = "is not an origin: give scheme://host[:port], such as http://localhost:3000"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--api-key", "k", "--api-key-file", "{empty}"],
            "give --api-key or --api-key-file, not both",
        ),
        (["--api-key", " "], "--api-key is empty"),
        (
            ["--api-key-file", "{absent}"],
            "cannot read the API key file {absent}: No such file or directory",
        ),
        (["--api-key-file", "{empty}"], "the API key file {empty} is empty"),
        (
            ["--api-key-file", "{two}"],
            "the API key file {two} must hold the key alone, on one line",
        ),
        (
            ["--allow-host", "http://moa.test"],
            "allowed host 'http://moa.test' is not a host name or address with an optional "
            ":PORT, such as moa.example.com or 192.168.1.5:8000",
        ),
        (
            ["--allow-host", "*"],
            "allowed host '*' is not a host name or address with an optional "
            ":PORT, such as moa.example.com or 192.168.1.5:8000",
        ),
        (
            ["--allow-origin", f"{UI}/"],
            f"allowed origin '{UI}/' {NOT_AN_ORIGIN} (no path, no trailing slash)",
        ),
        (
            ["--allow-origin", "*"],
            f"allowed origin '*' {NOT_AN_ORIGIN} (no path, no trailing slash)",
        ),
        (
            ["--allow-origin", "null"],
            f"allowed origin 'null' {NOT_AN_ORIGIN} (no path, no trailing slash)",
        ),
    ],
)
def test_bad_keys_hosts_and_origins_are_refused_before_serving(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.delenv("MOA_API_KEY", raising=False)
    files = {"empty": tmp_path / "empty", "two": tmp_path / "two", "absent": tmp_path / "absent"}
    files["empty"].write_text("\n")
    files["two"].write_text("sk-one\nsk-two\n")
    args = [arg.format(**files) for arg in args]
    calls = len(setup.upstream.requests)
    result = CliRunner().invoke(app, ["serve", "--config", str(setup.config), *args])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == message.format(**files)
    assert len(setup.upstream.requests) == calls


def test_an_empty_key_in_the_environment_is_no_key(setup: Setup) -> None:
    """The whole command: a one-line error, no traceback."""
    args = ["--config", str(setup.config), "--host", "0.0.0.0", "--port", str(free_port())]
    done = subprocess.run(
        serve_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MOA_API_KEY": ""},
    )
    assert (done.returncode, done.stderr) == (
        1,
        "error: refusing to listen on 0.0.0.0 without an API key: set MOA_API_KEY "
        "(or --api-key-file), or bind 127.0.0.1\n",
    )
