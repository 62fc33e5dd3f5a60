"""Orchestration overhead of moa-graph against the critical path and plain asyncio.

A fake OpenAI-compatible endpoint (its own process) answers every call after L seconds.
For each shape (layers x agents) the same MoA runs, interleaved, as: moa-graph; moa-graph
with a SQLite checkpointer; moa-graph streamed; the reference's ``asyncio.gather`` per
layer, as the reference reads replies (the SDK's typed chunks) and as moa-graph's clients
read them (dicts, :mod:`moa_graph.calls.chunk_dicts`); and that same ``asyncio.gather``
over moa-graph's LangChain chat models. The ideal is the critical path, (layers + 1) x L.
The baselines make the calls moa-graph makes (streamed under the default limits) through
the same HTTP client and connection pool, so "moa / asyncio" is moa-graph's cost against
the reference's way, "moa / asyncio, dict chunks" the work of the graph and of the
LangChain it calls through over the same parsing, and "LangChain / asyncio" the part of
it that is LangChain's; the spread of "moa / asyncio" is that of the ratios of the runs
made one after the other. Also prints the time from the end of the last layer to the
aggregator's first streamed token.

By default the MoA keeps its first-token and idle limits, so every call streams to time
its tokens. With ``--overall-limit``, each attempt has one overall limit instead, and the
calls no caller streams come back whole.

    python -m benchmarks.overhead [--latency 0.05] [--runs 20] [--overall-limit] [--shapes 3x6]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from benchmarks.common import (
    AsyncioMoA,
    LangChainMoA,
    endpoint,
    machine,
    moa_config,
    save,
    summary,
)
from moa_graph import MoAInput, create_moa
from moa_graph.run.streaming import Progress, Token, stream_moa

SHAPES = [(1, 3), (2, 6), (3, 6)]
PROMPT = "Explain the Mixture-of-Agents method in two sentences."


async def measure(
    shape: tuple[int, int], url: str, runs: int, db: Path, progress: bool
) -> dict[str, Any]:
    layers, agents = shape
    config = moa_config(layers, agents, url, progress=progress)
    builder = create_moa(config)
    plain = builder.compile()
    # As the command line and the server stream: the aggregator's tokens only.
    answer_only = create_moa(config, stream_proposers=False).compile()
    baseline = AsyncioMoA(layers, agents, url, stream=progress)
    dict_baseline = AsyncioMoA(layers, agents, url, stream=progress, dict_chunks=True)
    floor = LangChainMoA(config, stream=progress)
    variants_names = (
        "asyncio",
        "asyncio_dicts",
        "langchain",
        "moa",
        "sqlite",
        "stream",
        "stream_all",
    )
    times: dict[str, list[float]] = {k: [] for k in variants_names}
    first_token: list[float] = []
    messages: MoAInput = {"messages": [HumanMessage(PROMPT)]}

    async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
        durable = builder.compile(checkpointer=saver)

        async def streamed(graph: Any = answer_only, ttft: list[float] = first_token) -> None:
            last_layer_done = 0.0
            async for event in stream_moa(graph, messages):
                if isinstance(event, Progress) and event.data.get("moa_layer") == layers:
                    if event.data["event"] == "agent_finished":
                        last_layer_done = time.perf_counter()
                elif isinstance(event, Token) and last_layer_done:
                    ttft.append(time.perf_counter() - last_layer_done)
                    last_layer_done = 0.0

        variants: dict[str, Callable[[], Awaitable[Any]]] = {
            "asyncio": lambda: baseline.run(PROMPT),
            "asyncio_dicts": lambda: dict_baseline.run(PROMPT),
            "langchain": lambda: floor.run(PROMPT),
            "moa": lambda: plain.ainvoke(messages),
            "sqlite": lambda: durable.ainvoke(
                messages, {"configurable": {"thread_id": uuid.uuid4().hex}}
            ),
            "stream": streamed,
            "stream_all": lambda: streamed(plain, []),
        }
        for _ in range(3):  # warm up clients, connection pools and the endpoint
            for run in variants.values():
                await run()
        first_token.clear()
        for _ in range(runs):
            for name, run in variants.items():
                started = time.perf_counter()
                await run()
                times[name].append(time.perf_counter() - started)
    return {"times": times, "first_token": first_token}


def table(
    latency: float, runs: int, results: dict[tuple[int, int], dict[str, Any]], limits: str
) -> str:
    rows = [
        "| layers x agents | ideal | asyncio | moa-graph (p10-p90) | moa / asyncio (p10-p90) "
        "| moa / asyncio, dict chunks | LangChain / asyncio | moa / ideal "
        "| + SQLite / ideal | streamed / ideal | every agent streamed / ideal "
        "| last layer -> first token |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (layers, agents), result in results.items():
        ideal = (layers + 1) * latency
        med = {name: summary(samples)[0] for name, samples in result["times"].items()}
        times = result["times"]
        _, p10, p90 = summary(times["moa"])
        paired = [m / a for m, a in zip(times["moa"], times["asyncio"], strict=True)]
        _, r10, r90 = summary(paired)
        ttft = summary(result["first_token"])[0] * 1000
        rows.append(
            f"| {layers} x {agents} | {ideal * 1000:.0f} ms | {med['asyncio'] * 1000:.1f} ms "
            f"| {med['moa'] * 1000:.1f} ms ({p10 * 1000:.0f}-{p90 * 1000:.0f}) "
            f"| {med['moa'] / med['asyncio']:.3f} ({r10:.2f}-{r90:.2f}) "
            f"| {med['moa'] / med['asyncio_dicts']:.3f} "
            f"| {med['langchain'] / med['asyncio']:.3f} | {med['moa'] / ideal:.3f} "
            f"| {med['sqlite'] / ideal:.3f} | {med['stream'] / ideal:.3f} "
            f"| {med['stream_all'] / ideal:.3f} "
            f"| {ttft:.1f} ms (L = {latency * 1000:.0f} ms) |"
        )
    return (
        f"L = {latency * 1000:.0f} ms per call, {runs} runs per variant, medians, "
        f"{limits}; {machine()}.\n\n" + "\n".join(rows) + "\n"
    )


def _shapes(text: str) -> list[tuple[int, int]]:
    """Parse ``3x6,2x6`` into ``[(3, 6), (2, 6)]``."""
    try:
        shapes = [tuple(int(n) for n in part.split("x")) for part in text.split(",")]
    except ValueError:
        shapes = []
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise argparse.ArgumentTypeError(f"not layers x agents, e.g. 3x6,2x6: {text!r}")
    return [(s[0], s[1]) for s in shapes]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--overall-limit",
        action="store_true",
        help="one overall limit per attempt, no first-token or idle limit",
    )
    parser.add_argument(
        "--shapes",
        type=_shapes,
        default=SHAPES,
        help="layers x agents to measure, comma-separated (default: 1x3,2x6,3x6)",
    )
    args = parser.parse_args()
    progress = not args.overall_limit
    results = {}
    with endpoint(args.latency) as url, tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            db = Path(tmp) / f"{shape}.db"
            results[shape] = await measure(shape, url, args.runs, db, progress)
    limits = "default limits" if progress else "one overall limit per attempt"
    text = table(args.latency, args.runs, results, limits)
    print(text)
    name = f"overhead-L{args.latency * 1000:.0f}ms" + ("" if progress else "-overall-limit")
    if args.shapes != SHAPES:
        name += "".join(f"-{layers}x{agents}" for layers, agents in args.shapes)
    print(f"saved to {save(name, text)}")


if __name__ == "__main__":
    asyncio.run(main())
