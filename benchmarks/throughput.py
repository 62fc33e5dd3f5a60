"""Throughput: many prompts through a 2 x 6 MoA with a concurrency limit.

Compares LangGraph's ``abatch(max_concurrency=N)`` over the compiled graph against the
reference's ``asyncio.gather`` baseline behind a semaphore of the same size, on the fake
endpoint, each in its own process so that peak memory (max RSS) is measured apart.
moa-graph runs twice: with its default first-token and idle limits, for which every call
streams, and with one overall limit per attempt, for which no call streams.

    python -m benchmarks.throughput [--prompts 200] [--concurrency 32] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time

from benchmarks.common import AsyncioMoA, endpoint, machine, moa_config, save

LAYERS, AGENTS = 2, 6


RUNNERS = ("asyncio", "moa-graph", "moa-graph, overall limit")


async def run_moa_graph(url: str, prompts: int, concurrency: int, progress: bool) -> float:
    from langchain_core.messages import HumanMessage

    from moa_graph import MoAInput, create_moa

    graph = create_moa(moa_config(LAYERS, AGENTS, url, progress=progress)).compile()
    await graph.ainvoke({"messages": [HumanMessage("warm up")]})
    inputs: list[MoAInput] = [
        {"messages": [HumanMessage(f"Question {i}?")]} for i in range(prompts)
    ]
    started = time.perf_counter()
    outputs = await graph.abatch(inputs, {"max_concurrency": concurrency})
    elapsed = time.perf_counter() - started
    assert all(o["messages"][-1].content for o in outputs)
    return elapsed


async def run_asyncio(url: str, prompts: int, concurrency: int) -> float:
    baseline = AsyncioMoA(LAYERS, AGENTS, url)
    await baseline.run("warm up")
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with gate:
            return await baseline.run(f"Question {i}?")

    started = time.perf_counter()
    outputs = await asyncio.gather(*(one(i) for i in range(prompts)))
    elapsed = time.perf_counter() - started
    assert all(outputs)
    return elapsed


def child(kind: str, url: str, prompts: int, concurrency: int) -> None:
    if kind == "asyncio":
        elapsed = asyncio.run(run_asyncio(url, prompts, concurrency))
    else:
        progress = kind == "moa-graph"
        elapsed = asyncio.run(run_moa_graph(url, prompts, concurrency, progress))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"elapsed": elapsed, "peak_mib": peak_mib}))


def measure(kind: str, url: str, prompts: int, concurrency: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.throughput",
            "--child",
            kind,
            "--url",
            url,
            "--prompts",
            str(prompts),
            "--concurrency",
            str(concurrency),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=RUNNERS)
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.prompts, args.concurrency)
        return
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in RUNNERS}
    with endpoint(args.latency) as url:
        for _ in range(args.rounds):  # interleaved, so drift in machine load hits both
            for kind in results:
                results[kind].append(measure(kind, url, args.prompts, args.concurrency))
    best = {k: min(r["elapsed"] for r in v) for k, v in results.items()}
    peak = {k: max(r["peak_mib"] for r in v) for k, v in results.items()}

    def per_round(kind: str) -> str:
        return ", ".join(f"{args.prompts / r['elapsed']:.1f}" for r in results[kind])

    rows = [
        "| runner | answers/s (best of rounds) | each round | peak RSS |",
        "|---|---|---|---|",
        *(
            f"| {k} | {args.prompts / best[k]:.1f} | {per_round(k)} | {peak[k]:.0f} MiB |"
            for k in results
        ),
    ]
    ratios = "".join(
        f"\n{kind} / asyncio throughput: {best['asyncio'] / best[kind]:.3f}" for kind in RUNNERS[1:]
    )
    text = (
        f"{args.prompts} prompts, {LAYERS} x {AGENTS} MoA, concurrency {args.concurrency}, "
        f"L = {args.latency * 1000:.0f} ms, {args.rounds} rounds; {machine()}.\n\n"
        + "\n".join(rows)
        + f"\n{ratios}\n"
    )
    print(text)
    print(f"saved to {save('throughput', text)}")


if __name__ == "__main__":
    main()
