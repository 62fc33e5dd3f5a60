"""Real generation with the embedded llama.cpp runtime (SmolLM2-135M unless marked large)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path

import openai
import pytest

from moa_graph.local import (
    ChecksumMismatchError,
    LocalModelError,
    ModelLoadError,
    NoFreePortError,
    WeightsNotInstalledError,
    chat_model,
    get_model,
    shutdown,
)
from moa_graph.local import server as server_module
from moa_graph.local.server import SLOT_CONTEXT, LlamaServer, compute_threads, running_servers
from moa_graph.local.weights import model_file


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_not_installed_says_the_command(models_dir: Path) -> None:
    with pytest.raises(WeightsNotInstalledError, match=r"run `moa models install smollm2-135m`$"):
        chat_model("smollm2-135m", temperature=0, max_tokens=8)
    assert running_servers() == []


def test_corrupted_file_is_never_loaded(models_dir: Path) -> None:
    model = get_model("smollm2-135m")
    models_dir.mkdir()
    # Right size, wrong bytes: only the SHA-256 can tell.
    with model_file(model).open("wb") as stream:
        stream.truncate(model.size)
    with pytest.raises(ChecksumMismatchError, match="SHA-256 mismatch"):
        chat_model("smollm2-135m", temperature=0, max_tokens=8)
    assert running_servers() == []


def test_a_file_llama_cpp_cannot_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(1000))
    with pytest.raises(ModelLoadError, match=r"llama\.cpp could not load bad\.gguf"):
        LlamaServer(bad, alias="bad")


def test_no_port_to_bind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: every bind fails.
    monkeypatch.setattr(server_module, "HOST", "192.0.2.1")
    bad = tmp_path / "any.gguf"
    bad.write_bytes(b"GGUF")
    with pytest.raises(NoFreePortError, match=r"no free TCP port on 192\.0\.2\.1"):
        LlamaServer(bad, alias="any")


def test_threads_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_GRAPH_THREADS", "1")
    assert compute_threads() == 1
    monkeypatch.setenv("MOA_GRAPH_THREADS", "two")
    with pytest.raises(LocalModelError, match="MOA_GRAPH_THREADS must be a positive integer"):
        compute_threads()
    monkeypatch.delenv("MOA_GRAPH_THREADS")
    assert compute_threads() >= 1


@pytest.mark.local
def test_answers_with_usage_from_the_server(smollm2: str) -> None:
    model = chat_model(smollm2, temperature=0.7, max_tokens=32)
    reply = model.invoke("What is the capital of France?")
    assert isinstance(reply.content, str) and reply.content.strip()
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] > 0
    assert reply.usage_metadata["output_tokens"] > 0
    assert reply.response_metadata["model_name"] == smollm2


@pytest.mark.local
def test_streaming_reports_usage(smollm2: str) -> None:
    model = chat_model(smollm2, temperature=0.7, max_tokens=32)
    chunks = list(model.stream("Name a color."))
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert len(chunks) > 2
    assert usage and usage[-1]["output_tokens"] > 0


@pytest.mark.local
def test_temperature_zero_and_seed_repeat_the_answer(smollm2: str) -> None:
    model = chat_model(smollm2, temperature=0, max_tokens=48, seed=7)
    first = model.invoke("Write one sentence about the sea.").content
    second = model.invoke("Write one sentence about the sea.").content
    assert first == second


@pytest.mark.local
def test_one_server_per_model_serves_parallel_requests(smollm2: str) -> None:
    models = [chat_model(smollm2, temperature=0.7, max_tokens=24, seed=n) for n in range(3)]
    assert len(running_servers()) == 1
    assert len({m.openai_api_base for m in models}) == 1  # type: ignore[attr-defined]

    async def ask_all() -> list[str]:
        replies = await asyncio.gather(*(m.ainvoke("Say hello.") for m in models))
        return [str(r.content) for r in replies]

    assert all(asyncio.run(ask_all()))


@pytest.mark.local
def test_an_aggregator_sized_prompt_fits_and_a_longer_one_is_refused(smollm2: str) -> None:
    model = chat_model(smollm2, temperature=0, max_tokens=16)
    references = "\n".join(f"{n}. " + "the answer is four " * 128 for n in range(1, 4))
    reply = model.invoke(f"Responses:\n{references}\nWhat is 2+2?")
    assert reply.usage_metadata is not None
    assert 1536 < reply.usage_metadata["input_tokens"] < SLOT_CONTEXT
    with pytest.raises(openai.BadRequestError, match="exceeds the available context size"):
        model.invoke("word " * (SLOT_CONTEXT + 100))
    assert model.invoke("Still there?").content  # the server survived


@pytest.mark.local
def test_configure_changes_llama_cpp_settings_before_the_start(smollm2: str) -> None:
    import httpx

    from moa_graph.local.weights import installed_path

    seen = []

    def configure(params: object) -> None:
        seen.append(params)
        params.model_alias = {"renamed"}  # type: ignore[attr-defined]

    server = LlamaServer(
        installed_path(get_model(smollm2)), alias=smollm2, slots=2, configure=configure
    )
    try:
        models = httpx.get(f"{server.base_url}/v1/models", timeout=30, trust_env=False).json()
        assert [m["id"] for m in models["data"]] == ["renamed"]
        assert len(seen) == 1
    finally:
        server.close()
    assert not port_is_open(server.port)


@pytest.mark.local
def test_shutdown_closes_the_port_and_joins_the_threads(smollm2: str) -> None:
    chat_model(smollm2, temperature=0, max_tokens=4).invoke("Hi")
    shutdown()  # the first server of the process also starts llama.cpp's logger thread
    python_threads = threading.active_count()
    threads = os_threads()

    model = chat_model(smollm2, temperature=0, max_tokens=4)
    (server,) = running_servers()
    assert model.invoke("Hi").content
    assert port_is_open(server.port)
    assert os_threads() > threads

    shutdown()
    assert running_servers() == []
    assert not server.running
    assert not port_is_open(server.port)
    assert os_threads() == threads
    assert threading.active_count() == python_threads
    shutdown()  # idempotent


@pytest.mark.local
def test_local_tiny_moa(smollm2: str) -> None:
    from moa_graph import create_moa

    graph = create_moa("local-tiny").compile()
    out = graph.invoke({"messages": [("user", "What is 2+2?")]})
    assert out["messages"][-1].content.strip()
    assert [p.agent for p in out["proposals"]] == [
        "smollm2-135m",
        "smollm2-135m-2",
        "smollm2-135m-3",
    ]
    assert all(p.content.strip() and p.output_tokens > 0 for p in out["proposals"])
    assert out["usage"]["input_tokens"] > 0
    assert out["usage"]["output_tokens"] > 0
    assert (
        out["usage"]["total_tokens"] == out["usage"]["input_tokens"] + out["usage"]["output_tokens"]
    )
    assert len(running_servers()) == 1  # four agents, one server


@pytest.mark.local
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_local_tiny_moa_repeats_with_a_seed(smollm2: str, temperature: float) -> None:
    from moa_graph import create_moa, load_preset

    config = load_preset("local-tiny", temperature=temperature, seed=11)

    def run() -> tuple[list[str], str]:
        out = create_moa(config).compile().invoke({"messages": [("user", "Name a fruit.")]})
        return [p.content for p in out["proposals"]], str(out["messages"][-1].content)

    # The second run finds the first one's prompts in the server's cache.
    assert run() == run()


@pytest.mark.local
@pytest.mark.local_large
def test_qwen_1_5b_answers(qwen_1_5b: str) -> None:
    model = chat_model(qwen_1_5b, temperature=0, max_tokens=32, seed=1)
    reply = model.invoke("What is 17 * 3? Reply with the number only.")
    assert "51" in str(reply.content)


@pytest.mark.local
@pytest.mark.local_large
def test_local_preset_moa(qwen_1_5b: str) -> None:
    from moa_graph import create_moa, load_preset

    graph = create_moa(load_preset("local", max_tokens=64)).compile()
    out = graph.invoke({"messages": [("user", "What is 12 + 30? Answer briefly.")]})
    assert "42" in out["messages"][-1].content
    # Two proposals stating the same answer end the run; otherwise the third is asked.
    exited = out.get("exit") is not None
    assert len(out["proposals"]) == (2 if exited else 3)
    if exited:
        assert out["exit"]["action"] == "answer"
        assert out["exit"]["stage"] == 1
    assert out["usage"]["total_tokens"] > 0
