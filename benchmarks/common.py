"""What the benchmarks share: the endpoint process, the configs, the asyncio baseline."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from openai import AsyncOpenAI

from moa_graph import MoAConfig
from moa_graph.calls.chunk_dicts import dict_chunks_client
from moa_graph.calls.http_pool import async_http_client
from moa_graph.config.aggregate_prompt import AGGREGATE_PROMPT
from moa_graph.graph.planner import Planner
from moa_graph.strategies.prompts import format_references

HERE = Path(__file__).parent
RESULTS = HERE.parent / "docs" / "benchmarks"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def endpoint(latency: float, tokens: int = 64) -> Iterator[str]:
    """Run ``endpoint.py`` in a subprocess; yield its ``/v1`` URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "endpoint.py"),
            "--port",
            str(port),
            "--latency",
            str(latency),
            "--tokens",
            str(tokens),
        ],
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            except urllib.error.HTTPError:
                break  # 404: it is up
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the fake endpoint did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def moa_config(
    layers: int, agents: int, url: str, max_tokens: int = 512, *, progress: bool = True
) -> MoAConfig:
    """A ``layers`` x ``agents`` MoA whose models all live on the fake endpoint.

    Args:
        layers: Proposer layers.
        agents: Proposers per layer.
        url: The endpoint's ``/v1`` URL.
        max_tokens: Every agent's completion budget.
        progress: Keep the default first-token and idle limits, which every call
            streams for; False: one overall limit per attempt, so that calls no caller
            streams come back whole.
    """

    def agent(name: str) -> dict[str, Any]:
        return {"model": f"openai:{name}", "name": name, "base_url": url}

    config = MoAConfig(
        layers=[[agent(f"m{i}") for i in range(agents)] for _ in range(layers)],
        aggregator=agent("agg"),
        max_tokens=max_tokens,
    )
    if progress:
        return config
    limit = config.calls.timeout_s
    calls = config.calls.model_copy(
        update={"first_token_timeout_s": limit, "idle_timeout_s": limit}
    )
    return config.model_copy(update={"calls": calls})


class AsyncioMoA:
    """The reference implementation's approach: ``asyncio.gather`` per layer over a raw
    async client, references injected into the system message.

    It makes the calls moa-graph makes, through the same kind of HTTP client and
    connection pool (:func:`moa_graph.calls.http_pool.async_http_client`), so that a
    comparison measures moa-graph's own work: with ``stream`` (the default limits, which
    time every call's tokens) each call streams and asks for its usage, as moa-graph's
    do; without it each reply comes back whole. With ``dict_chunks`` it reads streamed
    chunks as dicts, as moa-graph's clients do
    (:func:`moa_graph.calls.chunk_dicts.dict_chunks_client`); without it, as the
    SDK's typed chunks, as the reference does.
    """

    def __init__(
        self,
        layers: int,
        agents: int,
        url: str,
        max_tokens: int = 512,
        *,
        stream: bool = False,
        dict_chunks: bool = False,
    ) -> None:
        # The limit of moa-graph's own clients (600 s), connecting included, where the
        # SDK's default gives up connecting after 5 s.
        self.client = AsyncOpenAI(
            base_url=url,
            api_key="bench",
            max_retries=0,
            timeout=600.0,
            http_client=async_http_client(),
        )
        if dict_chunks:  # streamed chunks read as dicts, as moa-graph's clients read them
            self.client = dict_chunks_client(self.client)
        self.layers = [[f"m{i}" for i in range(agents)] for _ in range(layers)]
        self.max_tokens = max_tokens
        self.stream = stream
        self.dict_chunks = dict_chunks

    async def _call(self, model: str, prompt: str, references: list[str]) -> str:
        messages: list[Any] = [{"role": "user", "content": prompt}]
        if references:
            system = format_references(AGGREGATE_PROMPT, references)
            messages.insert(0, {"role": "system", "content": system})
        create = self.client.chat.completions.create
        if not self.stream:
            response = await create(
                model=model, messages=messages, temperature=0.7, max_tokens=self.max_tokens
            )
            return response.choices[0].message.content or ""
        chunks = await create(
            model=model,
            messages=messages,
            temperature=0.7,
            max_completion_tokens=self.max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
        if self.dict_chunks:
            dicts: Any = chunks
            parts = [
                c["choices"][0]["delta"].get("content") or "" async for c in dicts if c["choices"]
            ]
        else:
            parts = [c.choices[0].delta.content or "" async for c in chunks if c.choices]
        return "".join(parts)

    async def run(self, prompt: str) -> str:
        references: list[str] = []
        for layer in self.layers:
            references = list(
                await asyncio.gather(*(self._call(m, prompt, references) for m in layer))
            )
        return await self._call("agg", prompt, references)


class LangChainMoA:
    """:class:`AsyncioMoA` over moa-graph's own chat models: the floor under moa-graph.

    The same ``asyncio.gather`` per layer, each call a LangChain ``ainvoke`` of the
    client moa-graph's plan holds for that agent (the same cached client and pool),
    without the graph, the call layer or its callbacks.
    """

    def __init__(self, config: MoAConfig, *, stream: bool = False) -> None:
        plan = Planner(config).plan()
        self.layers = [[agent.candidates[0].model for agent in layer] for layer in plan.layers]
        self.aggregator = plan.aggregator.candidates[0].model
        self.stream = stream

    async def _call(self, model: BaseChatModel, prompt: str, references: list[str]) -> str:
        messages: list[BaseMessage] = [HumanMessage(prompt)]
        if references:
            messages.insert(0, SystemMessage(format_references(AGGREGATE_PROMPT, references)))
        reply = await model.ainvoke(messages, stream=self.stream)
        return reply.text

    async def run(self, prompt: str) -> str:
        references: list[str] = []
        for layer in self.layers:
            references = list(
                await asyncio.gather(*(self._call(m, prompt, references) for m in layer))
            )
        return await self._call(self.aggregator, prompt, references)


def summary(samples: list[float]) -> tuple[float, float, float]:
    """Median, 10th and 90th percentile."""
    ordered = sorted(samples)
    deciles = statistics.quantiles(ordered, n=10) if len(ordered) > 1 else ordered * 9
    return statistics.median(ordered), deciles[0], deciles[-1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}"
    )


def save(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    return path
