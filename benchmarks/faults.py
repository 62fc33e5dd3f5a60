"""MoA runs against a faulty provider: how many are answered, and at what cost.

N runs of a 3-proposer MoA go to the fault server of the test suite, which fails
each call with probability ``--rate`` (429 with Retry-After, 500, dropped
connection, malformed JSON, empty content, or a hang past the timeout). Then K
command-line runs are killed with SIGKILL once two proposers answered and a third
hangs, and resumed with ``--resume``; every call the resumed run makes to an agent
that had already answered counts as repeated.

    python benchmarks/faults.py --runs 200 --rate 0.3 --kills 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from langchain_core.messages import HumanMessage

from moa_graph import MoAConfig, MoAError, create_moa
from tests.fault_server import Fault, fault_server, hang, random_plan

PROPOSERS = 3
CALLS_WITHOUT_FAULTS = PROPOSERS + 1


def config(url: str, run: str, timeout_s: float = 0.5) -> MoAConfig:
    def agent(name: str) -> dict[str, Any]:
        return {"model": f"openai:{run}-{name}", "name": name, "base_url": url}

    return MoAConfig(
        layers=[[agent(f"p{i}") for i in range(1, PROPOSERS + 1)]],
        aggregator=agent("agg"),
        timeout_s=timeout_s,
        max_retries=3,
        backoff_s=0.05,
        max_backoff_s=0.2,
    )


async def faulty_runs(runs: int, rate: float, seed: int, concurrency: int) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    calls_answered = 0
    with fault_server(random_plan(rate, seed, hang_s=1.0)) as server:
        limit = asyncio.Semaphore(concurrency)

        async def one(number: int) -> None:
            nonlocal calls_answered
            run = f"run{number}"
            async with limit:
                graph = create_moa(config(server.url, run)).compile()
                try:
                    await graph.ainvoke({"messages": [HumanMessage(f"Question {number}?")]})
                except MoAError as error:
                    outcomes["clean error"] += 1
                    outcomes[f"clean {type(error).__name__}"] += 1
                except Exception as error:  # what the benchmark exists to catch
                    outcomes[f"unhandled {type(error).__name__}"] += 1
                else:
                    outcomes["answered"] += 1
                    calls_answered += sum(
                        n for model, n in server.calls.items() if model.startswith(f"{run}-")
                    )

        await asyncio.gather(*(one(n) for n in range(runs)))
    unhandled = sum(n for kind, n in outcomes.items() if kind.startswith("unhandled"))
    return {
        "answered": outcomes["answered"],
        "clean errors": outcomes["clean error"],
        "clean kinds": {k[6:]: n for k, n in outcomes.items() if k.startswith("clean ")},
        "unhandled": unhandled,
        "unhandled kinds": {k: n for k, n in outcomes.items() if k.startswith("unhandled")},
        "calls per answered run": calls_answered / max(outcomes["answered"], 1),
    }


def killed_runs(kills: int, rate: float, seed: int) -> dict[str, int]:
    """SIGKILL CLI runs mid-layer, resume them, count calls repeated after the kill."""
    base = random_plan(rate, seed + 1, hang_s=1.0)
    answered: set[str] = set()
    lock = threading.Lock()

    def plan(model: str, number: int) -> Fault | None:
        if model.endswith("-p3") and number == 1:
            return hang(60)  # the slow agent the kill interrupts
        fault = base(model, number)
        if fault is None or fault.kind == "hang":  # a hang answers, late, within 120 s
            with lock:
                answered.add(model)
        return fault

    repeated = resumed_ok = resumed_error = 0
    with fault_server(plan) as server, tempfile.TemporaryDirectory() as folder:
        store = str(Path(folder) / "checkpoints.sqlite")
        for number in range(kills):
            run = f"kill{number}"
            path = Path(folder) / f"{run}.yaml"
            # A long timeout keeps the slow agent's call open until the kill.
            path.write_text(yaml.safe_dump(config(server.url, run, 120).to_dict()))
            common = ["-c", str(path), "--thread", run, "--checkpoints", store, "--json"]
            process = subprocess.Popen(
                [sys.executable, "-m", "moa_graph.cli", "ask", "Q?", *common],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            fast = {f"{run}-p1", f"{run}-p2"}
            while not fast <= answered and process.poll() is None:
                time.sleep(0.05)
            time.sleep(2.0)  # a hang's late answer lands, then the checkpoint write
            process.send_signal(signal.SIGKILL)
            process.wait()
            before = dict(server.calls)
            done_before = {m for m in answered if m.startswith(f"{run}-")}
            result = subprocess.run(
                [sys.executable, "-m", "moa_graph.cli", "ask", "--resume", *common],
                capture_output=True,
                text=True,
            )
            if result.returncode == 0:
                resumed_ok += 1
            else:
                resumed_error += 1
                print(result.stderr.strip().splitlines()[-1], file=sys.stderr)
            repeated += sum(server.calls[m] - before.get(m, 0) for m in done_before)
    return {"resumed and answered": resumed_ok, "resumed, clean error": resumed_error,
            "repeated calls": repeated}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    os.environ.pop("OPENAI_API_KEY", None)
    started = time.perf_counter()
    faulty = asyncio.run(faulty_runs(args.runs, args.rate, args.seed, args.concurrency))
    killed = killed_runs(args.kills, args.rate, args.seed)
    print(f"| {args.runs} runs at {args.rate:.0%} faults per call | |")
    print("|---|---|")
    print(f"| answered | {faulty['answered']} |")
    kinds = ", ".join(f"{k} {n}" for k, n in faulty["clean kinds"].items() if k != "error")
    print(f"| ended in a clean error | {faulty['clean errors']} ({kinds}) |")
    print(f"| unhandled exceptions | {faulty['unhandled']} {faulty['unhandled kinds'] or ''} |")
    print(
        f"| calls per answered run | {faulty['calls per answered run']:.2f} "
        f"(fault-free: {CALLS_WITHOUT_FAULTS}) |"
    )
    print(f"| runs killed (SIGKILL) and resumed | {args.kills} |")
    print(f"| resumed runs answered / clean error | {killed['resumed and answered']} / "
          f"{killed['resumed, clean error']} |")  # fmt: skip
    print(f"| calls repeated after resume | {killed['repeated calls']} |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
