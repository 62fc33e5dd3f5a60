"""The embedded local runtime on this machine: model speed, the `local` preset, batching.

Prints a Markdown table:

* each installed local model alone: prompt processing and generation, in tokens per
  second, as the llama.cpp server measures them (``timings`` in its responses);
* batching: N short requests of 128 generated tokens each sent to one server at once
  (its parallel slots decode them in one batch) against the same N one after another;
* the ``local`` preset end to end through ``create_moa``: wall time and the time to
  the aggregator's first streamed token, on a GSM8K-style question;
* the README's first question: the 1.5B alone, the ``local`` preset, and the preset
  with early exit, alternating, with their ratios to the 1.5B alone.

    python -m benchmarks.local [--models NAME ...] [--parallel 3] [--runs 3] [--no-moa]
    python -m benchmarks.local --readme-only --runs 3
    python -m benchmarks.local --levers --runs 1   # benchmarks/local_levers.py

Run it on an otherwise idle machine: llama.cpp uses every core.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from langchain_core.messages import HumanMessage

from benchmarks.common import machine
from moa_graph import MoAInput
from moa_graph.local import KNOWN_MODELS, get_model, shutdown
from moa_graph.local.server import SLOT_CONTEXT, SLOTS, compute_threads, server_for
from moa_graph.local.weights import WeightsStatus, weights_status

QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?"
)
GENERATED = 128  # tokens per request in the speed and batching rows
PROMPT = "Summarize the following text in one sentence.\n\n" + " ".join(
    f"Sentence {n}: the quick brown fox jumps over the lazy dog near the river bank."
    for n in range(1, 31)
)  # about 500 tokens


def complete(client: httpx.Client, base_url: str, *, prompt: str = PROMPT) -> dict[str, Any]:
    """One chat completion of exactly GENERATED tokens, prompt cache off."""
    response = client.post(
        f"{base_url}/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": GENERATED,
            "temperature": 0.7,
            "ignore_eos": True,  # llama.cpp extension: every request decodes GENERATED tokens
            "cache_prompt": False,  # llama.cpp extension: measure prompt processing each time
        },
        timeout=600,
    )
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def speed_row(client: httpx.Client, name: str, runs: int) -> list[str]:
    base_url = server_for(get_model(name)).base_url
    complete(client, base_url)  # warm up
    timings = [complete(client, base_url)["timings"] for _ in range(runs)]
    prompt_tps = statistics.median(t["prompt_per_second"] for t in timings)
    gen_tps = statistics.median(t["predicted_per_second"] for t in timings)
    prompt_n = timings[0]["prompt_n"]
    return [
        f"{name} alone",
        f"{prompt_tps:.0f} tok/s prompt ({prompt_n} tokens), {gen_tps:.1f} tok/s generation",
    ]


def batching_row(client: httpx.Client, name: str, parallel: int) -> list[str]:
    base_url = server_for(get_model(name)).base_url
    # Short prompts, as layer-1 proposers get: the rows measure decoding, not prompt reading.
    prompts = [f"Write a story about fox number {n}." for n in range(parallel)]
    started = time.perf_counter()
    for prompt in prompts:
        complete(client, base_url, prompt=prompt)
    sequential = time.perf_counter() - started
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda p: complete(client, base_url, prompt=p), prompts))
    batched = time.perf_counter() - started
    tokens = parallel * GENERATED
    return [
        f"{name}: {parallel} requests, batched vs one after another",
        f"{batched:.1f} s vs {sequential:.1f} s ({sequential / batched:.2f}x); "
        f"{tokens / batched:.1f} vs {tokens / sequential:.1f} generated tok/s",
    ]


def moa_rows(runs: int) -> list[list[str]]:
    from moa_graph import AGGREGATOR_NODE, create_moa, load_preset

    graph = create_moa(load_preset("local")).compile()
    graph.invoke({"messages": [HumanMessage("Say hi.")]})  # start the server, load the model
    walls, firsts = [], []
    final: dict[str, Any] = {}
    for _ in range(runs):
        started = time.perf_counter()
        first = float("nan")
        parts: Any = graph.stream(
            {"messages": [HumanMessage(QUESTION)]}, stream_mode=["messages", "values"]
        )
        for mode, item in parts:
            if mode == "values":
                final = item
                continue
            chunk, metadata = item
            node = metadata.get("langgraph_node")
            if first != first and node == AGGREGATOR_NODE and getattr(chunk, "content", ""):
                first = time.perf_counter() - started  # first != first: still NaN
        walls.append(time.perf_counter() - started)
        firsts.append(first)
    usage = final["usage"]
    proposals = final["proposals"]
    models = ", ".join(sorted({p.model for p in proposals}))
    answer = " ".join(str(final["messages"][-1].content).split())
    return [
        [
            f"`local` preset end to end ({len(proposals)} proposers: {models})",
            f"{statistics.median(walls):.1f} s wall (median of {runs}: "
            f"{min(walls):.1f} to {max(walls):.1f}); last run "
            f"{usage['input_tokens']} in / {usage['output_tokens']} out tokens",
        ],
        [
            "`local` preset: time to the aggregator's first token",
            f"{statistics.median(firsts):.1f} s (median of {runs}: "
            f"{min(firsts):.1f} to {max(firsts):.1f})",
        ],
        ["`local` preset: last answer (start)", answer[:150].replace("|", "/")],
    ]


README_QUESTION = "A farmer has 17 sheep and buys 5 more, then sells 8. How many are left?"
SINGLE = Path(__file__).parents[1] / "docs/evaluation/local-study/single.yaml"


def readme_rows(runs: int) -> list[list[str]]:
    """The README's first question: the 1.5B alone, the `local` preset without and with exit.

    Runs alternate between the three, so that a change in the machine's load falls on
    all of them; the ratios are to the 1.5B alone in this run.
    """
    from moa_graph import MoAConfig, create_moa, load_config, load_preset

    preset = load_preset("local")
    without = {**preset.model_dump(exclude_unset=True), "early_exit": None}
    configs = {
        # One greedy proposal, returned as it is: the study's `single`, no aggregator call.
        "1.5B alone (greedy)": load_config(SINGLE),
        "`local` preset without early exit": MoAConfig.model_validate(without),
        f"`local` preset (early_exit: {preset.early_exit})": preset,
    }
    graphs = {name: create_moa(config).compile() for name, config in configs.items()}
    question: MoAInput = {"messages": [HumanMessage(README_QUESTION)]}
    walls: dict[str, list[float]] = {name: [] for name in graphs}
    answers: dict[str, str] = {}
    for _ in range(runs):
        for name, graph in graphs.items():
            started = time.perf_counter()
            final = graph.invoke(question)
            walls[name].append(time.perf_counter() - started)
            answers[name] = " ".join(str(final["messages"][-1].content).split())[-60:]
    alone = statistics.median(walls["1.5B alone (greedy)"])
    return [
        [
            f"README question: {name}",
            f"{statistics.median(w):.1f} s (median of {runs}: {min(w):.1f} to {max(w):.1f}; "
            f"{statistics.median(w) / alone:.2f}x the 1.5B alone); answer ends "
            f"'{answers[name].replace('|', '/')}'",
        ]
        for name, w in walls.items()
    ]


def environment() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (
        f"{machine()}; CPU: {cpu}; {memory_gib:.0f} GiB RAM; "
        f"xllamacpp {version('xllamacpp')} (prebuilt CPU wheel); "
        f"{SLOTS} slots x {SLOT_CONTEXT} tokens per server, {compute_threads()} threads; "
        f"load average at start {load:.2f}"
    )


def main() -> None:
    installed = [
        name
        for name, model in KNOWN_MODELS.items()
        if weights_status(model) is not WeightsStatus.MISSING
    ]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=installed, choices=list(KNOWN_MODELS))
    parser.add_argument("--parallel", type=int, default=3, help="requests in the batching row")
    parser.add_argument("--runs", type=int, default=3, help="repetitions per measurement")
    parser.add_argument("--no-moa", action="store_true", help="skip the `local` preset rows")
    parser.add_argument(
        "--readme-only", action="store_true", help="only the README question's rows"
    )
    parser.add_argument(
        "--levers", action="store_true", help="llama.cpp's speed levers instead (local_levers)"
    )
    args, _ = parser.parse_known_args()
    if args.levers:
        from benchmarks import local_levers

        local_levers.main()
        return
    print(environment(), flush=True)
    if args.readme_only:
        print(table(readme_rows(args.runs)))
        shutdown()
        return
    rows: list[list[str]] = []
    with httpx.Client(trust_env=False) as client:
        for name in args.models:
            rows.append(speed_row(client, name, args.runs))
            rows.append(batching_row(client, name, args.parallel))
            shutdown()  # one model in memory at a time
            print(f"| {' | '.join(rows[-2])} |\n| {' | '.join(rows[-1])} |", flush=True)
    if not args.no_moa:
        rows.extend(moa_rows(args.runs))
        rows.extend(readme_rows(args.runs))
        shutdown()
    print(table(rows))


def table(rows: list[list[str]]) -> str:
    lines = (f"| {' | '.join(row)} |" for row in rows)
    return "\n| measurement | result |\n|---|---|\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
