"""llama.cpp levers for the `local` preset's model, each against the plain server.

Every lever is a llama.cpp server setting that keeps the answers identical (greedy) or
equal in distribution (sampled): speculative decoding with the 0.5B drafting for the
1.5B, n-gram lookup speculation (drafts copied from the prompt, for an aggregator that
quotes its references), and the prompt cache for the three proposers' shared prompt.
Each setting gets a fresh server (one at a time) and runs the preset's three kinds of
work on the README's question:

* ``answer``: the 1.5B's greedy answer alone;
* ``layer``: the proposer layer, greedy plus two seeded samples at 0.7, sent at once;
* ``synthesis``: the aggregator's greedy synthesis of the plain server's three answers.

Prints wall seconds per kind (median of ``--runs``), the ratio to the plain server, and
whether the greedy texts are the plain server's.

    python -m benchmarks.local_levers [--runs 2] [--draft-max 8]

Run it on an otherwise idle machine: llama.cpp uses every core.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import xllamacpp

from benchmarks.common import save
from benchmarks.local import QUESTION, environment
from moa_graph.config.aggregate_prompt import AGGREGATE_PROMPT
from moa_graph.local import get_model
from moa_graph.local.server import LlamaServer
from moa_graph.local.weights import installed_path
from moa_graph.strategies.prompts import format_references

TARGET, DRAFT = "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"
MAX_TOKENS = 512  # the preset's
Configure = Callable[[xllamacpp.CommonParams], None] | None
Kind = xllamacpp.common_speculative_type


def draft_model(n_max: int) -> Configure:
    def configure(params: xllamacpp.CommonParams) -> None:
        params.speculative.types = [Kind.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
        params.speculative.draft.mparams.path = str(installed_path(get_model(DRAFT)))
        params.speculative.draft.n_max = n_max
        params.speculative.draft.cpuparams.n_threads = params.cpuparams.n_threads
        params.speculative.draft.cpuparams_batch.n_threads = params.cpuparams.n_threads

    return configure


def lookup(kind: Any) -> Configure:
    def configure(params: xllamacpp.CommonParams) -> None:
        params.speculative.types = [kind]

    return configure


def chat(client: httpx.Client, url: str, messages: list[dict[str, str]], **sampling: Any) -> str:
    body = {"messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0, **sampling}
    response = client.post(f"{url}/v1/chat/completions", json=body, timeout=900)
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def timed(work: Callable[[], Any], runs: int) -> tuple[float, Any]:
    walls, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), result


def measure(
    configure: Configure, runs: int, references: list[str] | None, cache_prompt: bool = False
) -> dict[str, tuple[float, Any]]:
    """Run the three kinds of work on a fresh server set up by ``configure``."""
    server = LlamaServer(installed_path(get_model(TARGET)), alias=TARGET, configure=configure)
    question = [{"role": "user", "content": QUESTION}]
    cache = {"cache_prompt": cache_prompt}
    try:
        with httpx.Client(trust_env=False) as client, ThreadPoolExecutor(3) as pool:
            url = server.base_url
            chat(client, url, [{"role": "user", "content": "Say hi."}], max_tokens=8)  # warm
            samplings = [
                {"seed": 0, **cache},
                {"seed": 1, "temperature": 0.7, **cache},
                {"seed": 2, "temperature": 0.7, **cache},
            ]

            def layer() -> list[str]:
                return list(pool.map(lambda s: chat(client, url, question, **s), samplings))

            results = {
                "answer": timed(lambda: chat(client, url, question, seed=0, **cache), runs),
                "layer": timed(layer, runs),
            }
            refs = references or results["layer"][1]
            system = format_references(AGGREGATE_PROMPT, refs)
            synthesis = [{"role": "system", "content": system}, *question]
            results["synthesis"] = timed(lambda: chat(client, url, synthesis, seed=0), runs)
            return results
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="repetitions per measurement")
    parser.add_argument("--draft-max", type=int, default=8, help="tokens the 0.5B drafts")
    args, _ = parser.parse_known_args()  # also run as ``benchmarks.local --levers``

    plain = measure(None, args.runs, None)
    references = plain["layer"][1]
    levers = {
        f"0.5B drafts up to {args.draft_max} tokens": draft_model(args.draft_max),
        "n-gram lookup (ngram_simple)": lookup(Kind.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE),
        "n-gram lookup (ngram_mod)": lookup(Kind.COMMON_SPECULATIVE_TYPE_NGRAM_MOD),
    }
    rows = [("plain server", plain)]
    rows.append(("prompt cache on", measure(None, args.runs, references, cache_prompt=True)))
    for name, configure in levers.items():
        rows.append((name, measure(configure, args.runs, references)))
        print(f"measured: {name}", flush=True)

    lines = [
        f"{environment()}; {args.runs} run(s) per cell, median.",
        "",
        "| setting | answer | layer (3 at once) | synthesis | greedy texts as plain |",
        "|---|---|---|---|---|",
    ]
    for name, result in rows:
        cells = [
            f"{result[k][0]:.1f} s ({plain[k][0] / result[k][0]:.2f}x)"
            for k in ("answer", "layer", "synthesis")
        ]
        same = [
            result["answer"][1] == plain["answer"][1],
            result["layer"][1][0] == plain["layer"][1][0],
            result["synthesis"][1] == plain["synthesis"][1],
        ]
        lines.append(f"| {name} | {' | '.join(cells)} | {sum(same)} of 3 |")
    table = "\n".join(lines) + "\n"
    print(f"\n{table}\nsaved to {save('local-levers', table)}")


if __name__ == "__main__":
    main()
