"""CPU per model call: one JSON response against a streamed answer, through LangChain.

moa-graph streams every call so that its timeouts can watch progress (first token,
time between tokens). This measures what that costs per call against the benchmarks'
fake endpoint (no latency, ``--tokens`` chunks per answer), sequential calls, medians
of rounds, interleaved so that a busy machine weighs on both alike.

    python -m benchmarks.streaming [--calls 100] [--rounds 5] [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from benchmarks.common import endpoint, machine
from moa_graph.config.model import AgentSpec
from moa_graph.graph.clients import resolve_model


async def _per_call_ms(model: object, calls: int, stream: bool) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await model.ainvoke("Hi", stream=stream)  # type: ignore[attr-defined]
    return (time.perf_counter() - started) / calls * 1000


async def measure(url: str, calls: int, rounds: int) -> dict[str, float]:
    agent = AgentSpec(model="openai:fake", base_url=url)
    model = resolve_model(agent, temperature=0, max_tokens=64, timeout_s=60)
    await _per_call_ms(model, 5, True)  # warm the connection pool
    plain, streamed = [], []
    for _ in range(rounds):
        plain.append(await _per_call_ms(model, calls, False))
        streamed.append(await _per_call_ms(model, calls, True))
    return {"plain": statistics.median(plain), "streamed": statistics.median(streamed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    with endpoint(0.0, tokens=args.tokens) as url:
        result = asyncio.run(measure(url, args.calls, args.rounds))
    print(f"{args.calls} sequential calls x {args.rounds} rounds, medians; {machine()}.\n")
    print(f"| answer of {args.tokens} tokens | ms per call | chunks |")
    print("|---|---|---|")
    print(f"| one JSON response | {result['plain']:.2f} | 1 |")
    print(f"| streamed | {result['streamed']:.2f} | {args.tokens} |")
    extra = (result["streamed"] - result["plain"]) / args.tokens * 1000
    print(f"\nstreaming adds {extra:.0f} µs of CPU per chunk")


if __name__ == "__main__":
    main()
