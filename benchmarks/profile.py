"""Where moa-graph's CPU goes per model call, under the throughput benchmark's load.

Runs prompts through the 2 x 6 MoA (13 calls each) with 32 at a time against the fake
endpoint, in this process: once to measure CPU per call (``time.process_time``), then the
asyncio baseline the same way, then the MoA under cProfile. Prints the CPU per call, the
profiled time per package (own time) and the functions with the most cumulative time,
both per model call. cProfile slows Python code
about three-fold; compare its shares, not its milliseconds, with the unprofiled CPU.

    python -m benchmarks.profile [--prompts 64] [--overall-limit] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import HumanMessage

from benchmarks.common import AsyncioMoA, endpoint, moa_config
from benchmarks.throughput import AGENTS, LAYERS

CALLS = LAYERS * AGENTS + 1
_OURS = ("moa_graph", "langgraph", "langchain_core", "langchain_openai", "tenacity")
_PACKAGES = (
    re.compile(r"site-packages/([A-Za-z0-9_]+)"),
    re.compile(r"/(moa_graph|benchmarks)/"),
    re.compile(r"python3\.\d+/([A-Za-z0-9_]+)"),
)


async def run(
    ask: Callable[[str], Awaitable[Any]],
    prompts: int,
    concurrency: int,
    profile: cProfile.Profile | None = None,
) -> float:
    """Ask ``prompts`` questions, ``concurrency`` at a time; return the CPU seconds taken."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await ask(f"Question {i}?")

    started = time.process_time()
    if profile:
        profile.enable()
    await asyncio.gather(*(one(i) for i in range(prompts)))
    if profile:
        profile.disable()
    return time.process_time() - started


def package(filename: str) -> str:
    """Return the package a profiled function belongs to (stdlib modules by name)."""
    for kind, pattern in zip(("", "", "stdlib "), _PACKAGES, strict=True):
        if match := pattern.search(filename):
            return kind + match.group(1)
    return "built-in"


def report(stats: pstats.Stats, calls: int, top: int) -> str:
    """Return the profile's own time per package and its top functions, per model call."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    own: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, tottime, _, _) in raw.items():
        own[package(filename)] += tottime
    idle = sum(v[2] for k, v in raw.items() if "poll" in k[2] and k[0] == "~")
    own["built-in"] -= idle  # waiting in epoll is not CPU
    total = sum(own.values())
    lines = [f"profiled: {total / calls * 1000:.2f} ms per call", "", "own time per package:"]
    for name, seconds in sorted(own.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"  {name:28s} {seconds / calls * 1000:6.3f} ms  {seconds / total:6.1%}")
    ranked = sorted(raw.items(), key=lambda kv: -kv[1][3])
    ranked = [(k, v) for k, v in ranked if not k[0].startswith(("~", "<"))]
    ours = [(k, v) for k, v in ranked if package(k[0]) in _OURS]
    for title, rows in (("all", ranked[:top]), ("moa-graph, LangChain, LangGraph", ours[:top])):
        lines += ["", f"cumulative time per call, {title}:"]
        for (filename, line, name), (_, _, _, cumtime, _) in rows:
            where = f"{package(filename)} {name} ({filename.rsplit('/', 1)[-1]}:{line})"
            lines.append(f"  {cumtime / calls * 1000:6.3f} ms  {where}")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--overall-limit", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    from moa_graph import create_moa

    with endpoint(args.latency) as url:
        config = moa_config(LAYERS, AGENTS, url, progress=not args.overall_limit)
        graph = create_moa(config).compile()
        baseline = AsyncioMoA(LAYERS, AGENTS, url)

        async def moa(question: str) -> None:
            await graph.ainvoke({"messages": [HumanMessage(question)]})

        for ask in (moa, baseline.run):  # warm up
            await run(ask, args.concurrency, args.concurrency)
        cpu = {ask: await run(ask, args.prompts, args.concurrency) for ask in (moa, baseline.run)}
        profile = cProfile.Profile()
        await run(moa, args.prompts, args.concurrency, profile)
    calls = args.prompts * CALLS
    limits = "one overall limit per attempt" if args.overall_limit else "default limits"
    print(f"{args.prompts} prompts x {CALLS} calls, {limits}")
    print(f"CPU per model call, unprofiled: {cpu[moa] / calls * 1000:.2f} ms")
    print(f"asyncio baseline, the same calls: {cpu[baseline.run] / calls * 1000:.2f} ms")
    print(report(pstats.Stats(profile), calls, args.top))


if __name__ == "__main__":
    asyncio.run(main())
