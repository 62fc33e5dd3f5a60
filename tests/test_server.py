"""``moa serve`` as a real subprocess, driven by the OpenAI SDK and LangChain.

The served MoAs' agents call the loopback fake OpenAI server, so every answer and
every token count is known: the fake answers ``"{model} says: {last message}"`` and
records the usage it reported for each call.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.sqlite import SqliteSaver

from moa_graph import create_moa
from tests.openai_server import FakeOpenAIServer, echo_reply, serve
from tests.server_process import ServedMoA, free_port, moa_serve, serve_command

API_KEY = "sk-moa-test-0123456789-sentinel"
SLOW_S = 2.0
MAX_BODY_BYTES = 100_000


def _reply(request: dict[str, Any]) -> str:
    if request["model"].startswith("slow"):
        time.sleep(SLOW_S)
    return echo_reply(request)


@dataclass
class Setup:
    moa: ServedMoA
    upstream: FakeOpenAIServer
    checkpoint: Path
    configs: dict[str, Path]


def _write_configs(directory: Path, upstream: str) -> dict[str, Path]:
    def agent(model: str, **extra: Any) -> dict[str, Any]:
        return {"model": f"openai:{model}", "base_url": upstream, **extra}

    closed_port = free_port()
    dead = agent("dead", base_url=f"http://127.0.0.1:{closed_port}/v1", max_retries=0)
    configs = {
        "fake-moa": {"layers": [[agent("alpha"), agent("beta")]], "aggregator": agent("gamma")},
        "slow-moa": {"layers": [[agent("slow-a")]], "aggregator": agent("gamma")},
        "broken-moa": {"layers": [[dead]], "aggregator": agent("gamma")},
        "half-moa": {"layers": [[agent("alpha"), dead]], "aggregator": agent("gamma")},
        "headless-moa": {"layers": [[agent("alpha")]], "aggregator": dead},
    }
    paths = {}
    for name, data in configs.items():
        paths[name] = directory / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump({"name": name, **data}))
    return paths


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("serve")
    with serve(_reply) as upstream:
        configs = _write_configs(directory, upstream.url)
        checkpoint = directory / "runs.db"
        args = [a for path in configs.values() for a in ("--config", str(path))]
        args += ["--max-concurrent", "2", "--max-body-bytes", str(MAX_BODY_BYTES)]
        args += ["--checkpoint", f"sqlite:{checkpoint}"]
        with moa_serve(args, log=directory / "serve.log", api_key=API_KEY) as moa:
            yield Setup(moa, upstream, checkpoint, configs)


@pytest.fixture
def client(setup: Setup) -> openai.OpenAI:
    return openai.OpenAI(base_url=setup.moa.url, api_key=API_KEY, max_retries=0)


def _usage_since(upstream: FakeOpenAIServer, start: int) -> dict[str, int]:
    new = upstream.usages[start:]
    return {key: sum(u[key] for u in new) for key in new[0]} if new else {}


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_sync_answer_and_usage_are_the_sum_over_agents(setup: Setup, client: openai.OpenAI) -> None:
    start = len(setup.upstream.usages)
    raw = client.chat.completions.with_raw_response.create(
        model="fake-moa", messages=_user("What is 2+2?")
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "gamma says: What is 2+2?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "fake-moa"
    # Two proposers and the aggregator, each counted as the upstream reported it.
    assert len(setup.upstream.usages) - start == 3
    assert completion.usage is not None
    assert completion.usage.model_dump(include={"prompt_tokens", "completion_tokens"}) == {
        key: value
        for key, value in _usage_since(setup.upstream, start).items()
        if key != "total_tokens"
    }
    assert completion.usage.total_tokens == _usage_since(setup.upstream, start)["total_tokens"]
    # The extension is absent unless asked for.
    assert "moa" not in (completion.model_extra or {})
    assert raw.headers["x-moa-thread-id"]


async def test_async_concurrent_requests_get_their_own_answers(setup: Setup) -> None:
    client = openai.AsyncOpenAI(base_url=setup.moa.url, api_key=API_KEY, max_retries=0)
    questions = ["Name a prime.", "Name a colour."]
    completions = await asyncio.gather(
        *(client.chat.completions.create(model="fake-moa", messages=_user(q)) for q in questions)
    )
    answers = [c.choices[0].message.content for c in completions]
    assert answers == [f"gamma says: {q}" for q in questions]
    await client.close()


def test_stream_sends_the_aggregator_tokens_then_usage(setup: Setup, client: openai.OpenAI) -> None:
    start = len(setup.upstream.usages)
    stream = client.chat.completions.create(
        model="fake-moa",
        messages=_user("Why is the sky blue?"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices]
    pieces = [piece for piece in pieces if piece]
    assert "".join(pieces) == "gamma says: Why is the sky blue?"
    assert len(pieces) > 1, "the answer came in one piece, not streamed"
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert all(c.usage is None for c in chunks[:-1])
    expected = _usage_since(setup.upstream, start)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        expected["prompt_tokens"],
        expected["completion_tokens"],
        expected["total_tokens"],
    )


def test_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="fake-moa", messages=_user("Hi"), stream=True)
    )
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "gamma says: Hi"


def test_proposals_and_per_agent_usage_when_asked(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="fake-moa",
        messages=_user("Hello there"),
        extra_body={"moa": {"include_proposals": True}},
    )
    extension = (completion.model_extra or {})["moa"]
    assert [(p["agent"], p["content"]) for p in extension["proposals"]] == [
        ("alpha", "alpha says: Hello there"),
        ("beta", "beta says: Hello there"),
    ]
    assert extension["aggregator"]["agent"] == "gamma"
    agents = [*extension["proposals"], extension["aggregator"]]
    assert completion.usage is not None
    assert sum(a["usage"]["total_tokens"] for a in agents) == completion.usage.total_tokens
    assert sum(a["usage"]["prompt_tokens"] for a in agents) == completion.usage.prompt_tokens

    chunks = list(
        client.chat.completions.create(
            model="fake-moa",
            messages=_user("Hello there"),
            stream=True,
            extra_body={"moa": {"include_proposals": True}},
        )
    )
    last = chunks[-1].model_extra or {}
    assert [p["agent"] for p in last["moa"]["proposals"]] == ["alpha", "beta"]
    assert all("moa" not in (c.model_extra or {}) for c in chunks[:-1])


def _sampling(upstream: FakeOpenAIServer, start: int) -> dict[str, tuple[Any, Any]]:
    return {
        r["model"]: (r.get("temperature"), r.get("max_completion_tokens", r.get("max_tokens")))
        for r in upstream.requests[start:]
    }


def test_temperature_and_max_tokens_apply_to_the_aggregator(
    setup: Setup, client: openai.OpenAI
) -> None:
    start = len(setup.upstream.requests)
    client.chat.completions.create(
        model="fake-moa", messages=_user("Hi"), temperature=0.1, max_tokens=33
    )
    assert _sampling(setup.upstream, start) == {
        "alpha": (0.7, 512),
        "beta": (0.7, 512),
        "gamma": (0.1, 33),
    }
    start = len(setup.upstream.requests)
    client.chat.completions.create(
        model="fake-moa",
        messages=_user("Hi"),
        temperature=0.0,
        max_completion_tokens=20,
        extra_body={"moa": {"sampling": "all"}},
    )
    assert set(_sampling(setup.upstream, start).values()) == {(0.0, 20)}


def test_models_lists_the_served_models(client: openai.OpenAI) -> None:
    assert sorted(m.id for m in client.models.list()) == [
        "broken-moa",
        "fake-moa",
        "half-moa",
        "headless-moa",
        "slow-moa",
    ]
    assert client.models.retrieve("fake-moa").owned_by == "moa-graph"


def test_each_request_runs_on_its_own_checkpointed_thread(
    setup: Setup, client: openai.OpenAI
) -> None:
    threads = []
    for question in ("First?", "Second?"):
        raw = client.chat.completions.with_raw_response.create(
            model="fake-moa", messages=_user(question)
        )
        threads.append((question, raw.headers["x-moa-thread-id"]))
    assert threads[0][1] != threads[1][1]
    with SqliteSaver.from_conn_string(str(setup.checkpoint)) as saver:
        graph = create_moa(setup.configs["fake-moa"]).compile(checkpointer=saver)
        for question, thread_id in threads:
            state = graph.get_state({"configurable": {"thread_id": thread_id}})
            assert [m.text for m in state.values["messages"]] == [
                question,
                f"gamma says: {question}",
            ]
            assert [p.agent for p in state.values["proposals"]] == ["alpha", "beta"]


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=_user("Hi"))
    assert caught.value.code == "model_not_found"
    assert "'nope' does not exist" in caught.value.message


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"messages": []}, "messages", "at least 1 item"),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, "messages", "from the user"),
        ({"messages": [{"role": "wizard", "content": "Hi"}]}, "messages", "wizard"),
        ({"temperature": 3}, "temperature", "less than or equal to 2"),
        ({"n": 2}, "n", "less than or equal to 1"),
        ({"moa": {"sampling": "proposers"}}, "moa", "'aggregator' or 'all'"),
    ],
)
def test_bad_request_is_400(
    client: openai.OpenAI, fields: dict[str, Any], param: str, says: str
) -> None:
    body = {"model": "fake-moa", "messages": _user("Hi"), **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body=body, cast_to=httpx.Response)
    assert caught.value.param == param
    assert says in caught.value.message


def test_malformed_json_is_400_and_unknown_route_404(setup: Setup) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    response = httpx.post(f"{setup.moa.url}/chat/completions", content=b"{", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "the request body is not valid JSON"
    response = httpx.get(f"{setup.moa.url}/embeddings", headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_missing_or_wrong_key_is_401_and_no_key_is_echoed(setup: Setup) -> None:
    response = httpx.post(
        f"{setup.moa.url}/chat/completions", json={"model": "fake-moa", "messages": _user("Hi")}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    wrong = "sk-wrong-key-987654321"
    client = openai.OpenAI(base_url=setup.moa.url, api_key=wrong, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="fake-moa", messages=_user("Hi"))
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "incorrect API key"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert wrong not in setup.moa.log_text()
    assert API_KEY not in setup.moa.log_text()


def test_body_over_the_limit_is_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="fake-moa", messages=_user("x" * MAX_BODY_BYTES))
    assert caught.value.status_code == 413
    assert caught.value.code == "request_too_large"


def test_concurrency_limit_answers_429(setup: Setup, client: openai.OpenAI) -> None:
    answers: dict[str, str | None] = {}

    def ask(question: str) -> None:
        completion = client.chat.completions.create(model="slow-moa", messages=_user(question))
        answers[question] = completion.choices[0].message.content

    questions = ["Slow one?", "Slow two?"]
    workers = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for worker in workers:
        worker.start()
    # Both runs hold their slot once their slow proposer has been called.
    deadline = time.monotonic() + 30
    while {
        r["messages"][-1]["content"] for r in setup.upstream.requests if r["model"] == "slow-a"
    } != set(questions):
        assert time.monotonic() < deadline, "the slow runs never started"
        time.sleep(0.02)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="fake-moa", messages=_user("One more"))
    assert caught.value.code == "too_many_concurrent_runs"
    assert caught.value.response.headers["retry-after"] == "1"
    for worker in workers:
        worker.join()
    assert answers == {q: f"gamma says: {q}" for q in questions}
    # The slots are free again.
    assert client.chat.completions.create(model="fake-moa", messages=_user("Hi")).choices


def test_a_client_that_goes_away_cancels_its_run(setup: Setup, client: openai.OpenAI) -> None:
    questions = {False: "Abandoned plain?", True: "Abandoned stream?"}
    for stream, question in questions.items():
        body = {"model": "slow-moa", "messages": _user(question), "stream": stream}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{setup.moa.url}/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=0.5,
            )
    time.sleep(SLOW_S + 1)
    # The slow proposers were called, but no run went on to its aggregator.
    asked = {r["model"]: [] for r in setup.upstream.requests}
    for request in setup.upstream.requests:
        asked[request["model"]].append(request["messages"][-1]["content"])
    assert set(questions.values()) <= set(asked["slow-a"])
    assert not set(questions.values()) & set(asked["gamma"])
    # Their slots are free again.
    for _ in range(2):
        assert client.chat.completions.create(model="fake-moa", messages=_user("Hi")).choices


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("broken-moa", "layer 1: 0 of 1 agents answered, 1 needed; failed: dead:"),
        ("headless-moa", "aggregator 'dead' failed:"),
    ],
)
def test_upstream_failure_is_502_naming_the_failing_agent(
    client: openai.OpenAI, model: str, says: str
) -> None:
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=model, messages=_user("Hi"), stream=stream)
        error = caught.value
        assert error.status_code == 502
        assert error.code == "agents_failed"
        assert isinstance(error.body, dict)
        assert says in error.body["message"] and "ConnectionError" in error.body["message"]
        assert error.body["failed_agents"] == ["dead"]
        assert error.response.headers["x-moa-thread-id"]


def test_a_failed_proposer_is_reported_when_enough_agents_answered(
    client: openai.OpenAI,
) -> None:
    completion = client.chat.completions.create(
        model="half-moa", messages=_user("Hi"), extra_body={"moa": {"include_proposals": True}}
    )
    assert completion.choices[0].message.content == "gamma says: Hi"
    alpha, dead = (completion.model_extra or {})["moa"]["proposals"]
    assert (alpha["agent"], alpha["error"]) == ("alpha", None)
    assert dead["agent"] == "dead" and "ConnectionError" in dead["error"]


def test_served_moa_is_a_proposer_of_another_moa(setup: Setup) -> None:
    served = ChatOpenAI(model="fake-moa", base_url=setup.moa.url, api_key=API_KEY, max_retries=0)  # type: ignore[call-arg]
    outer = create_moa(
        {
            "layers": [[served, {"model": "openai:delta", "base_url": setup.upstream.url}]],
            "aggregator": {"model": "openai:epsilon", "base_url": setup.upstream.url},
        }
    ).compile()
    start = len(setup.upstream.usages)
    result = outer.invoke({"messages": [("user", "Is MoA recursive?")]})
    assert result["messages"][-1].text == "epsilon says: Is MoA recursive?"
    inner, delta = result["proposals"]
    assert (inner.agent, inner.content) == ("fake-moa", "gamma says: Is MoA recursive?")
    assert delta.content == "delta says: Is MoA recursive?"
    # Upstream saw the inner MoA's three calls, then delta and epsilon; the outer
    # MoA's usage counts the inner one's as one agent's.
    assert len(setup.upstream.usages) - start == 5
    assert result["usage"]["total_tokens"] == _usage_since(setup.upstream, start)["total_tokens"]


def test_non_loopback_bind_without_key_is_refused(setup: Setup) -> None:
    config = str(setup.configs["fake-moa"])
    done = subprocess.run(
        serve_command("--config", config, "--host", "0.0.0.0", "--port", str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MOA_API_KEY"},
    )
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0 without an API key" in done.stderr


def test_postgres_checkpoint_keeps_each_run(setup: Setup, tmp_path: Path) -> None:
    url = os.environ.get("MOA_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set MOA_TEST_POSTGRES_URL (bash .ci/postgres.sh prints one)")
    from langgraph.checkpoint.postgres import PostgresSaver

    config = setup.configs["fake-moa"]
    args = ["--config", str(config), "--checkpoint", url]
    with moa_serve(args, log=tmp_path / "serve.log") as moa:
        client = openai.OpenAI(base_url=moa.url, api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="fake-moa", messages=_user("Kept in PostgreSQL?")
        )
        thread_id = raw.headers["x-moa-thread-id"]
    assert url not in moa.log_text()
    with PostgresSaver.from_conn_string(url) as saver:
        graph = create_moa(config).compile(checkpointer=saver)
        state = graph.get_state({"configurable": {"thread_id": thread_id}})
    assert state.values["messages"][-1].text == "gamma says: Kept in PostgreSQL?"
    assert [p.agent for p in state.values["proposals"]] == ["alpha", "beta"]
