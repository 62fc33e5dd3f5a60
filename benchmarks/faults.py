"""MoA runs against a faulty provider: answered, clean errors, spliced streams, repeats.

N runs of a 3-proposer MoA (with one aggregator fallback) go to the fault server of
the test suite, which keeps connections alive and fails each call with probability
``--rate``, picking one fault kind at random: a 429 with Retry-After, a 500, a
dropped connection, malformed JSON, empty content, a hang past the first-token
timeout; or a stream that breaks part way: dropped after 0-4 events, a garbled event
after 0-4, a stall longer than the idle timeout after 0-4, or a slow but live
stream. A quarter of the runs are awaited (``ainvoke``); a quarter want the answer
whole as ``moa ask --json`` and ``moa serve`` with ``"stream": false`` do
(``stream_moa(..., tokens=False)``); a quarter stream the answer as the command line
and the server do (proposers unwatched); a quarter stream every token
(``create_moa``'s default), and each streamed run keeps the aggregator's tokens
(``AGGREGATOR_TAG``) and checks them: the text streamed must be the final answer, or,
for a run that failed, the start of one attempt's text. Anything else (an attempt's
start followed by another attempt) is a spliced stream. The runs that show no token
must all be answered: nothing they do is shown before the answer, so every fault is
retried.

Then K command-line runs are killed with SIGKILL once two proposers answered and a
third hangs, and resumed with ``--resume``; every call the resumed run makes to an
agent that had already answered counts as repeated.

    python -m benchmarks.faults --runs 200 --rate 0.3 --kills 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from langchain_core.messages import HumanMessage

from moa_graph import AGGREGATOR_TAG, MoAConfig, MoAError, create_moa
from moa_graph.calls.call import StreamBrokenError
from moa_graph.config.call_settings import CallSettings
from moa_graph.run.streaming import Finished, stream_moa
from tests.fault_server import (
    DROPPED,
    EMPTY,
    MALFORMED,
    RATE_LIMITED,
    SERVER_ERROR,
    Fault,
    dropped_after,
    fault_server,
    hang,
    malformed_after,
    slow,
    stalled_after,
)
from tests.openai_server import echo_reply

PROPOSERS = 3
CALLS_WITHOUT_FAULTS = PROPOSERS + 1
MODES = ("invoke", "answer whole", "stream answer", "stream all")
STREAMED = ("stream answer", "stream all")
RUN_LIMIT_S = 120.0  # a run still going after this never ends: reported, not waited for
ANSWERED_KINDS = {None, "hang", "stall", "slow"}  # whole answers, late, under long timeouts


@dataclass(frozen=True)
class Timeouts:
    """The call timeouts of the faulty runs, and the faults' delays around them."""

    first_token_s: float = 1.0
    idle_s: float = 0.75
    total_s: float = 5.0
    hang_s: float = 2.5  # past first_token_s: the call is cut and retried
    stall_s: float = 2.5  # past idle_s: the stream is cut
    slow_s: float = 0.1  # seconds per event, under idle_s: never cut


def mixed_plan(rate: float, seed: int, timeouts: Timeouts) -> Callable[[str, int], Fault | None]:
    """Fault each call with probability ``rate``: every kind of the fault server alike.

    A stream's fault comes after 0 to 4 events: before the first token, part way
    through the answer (four words here), or after its last word but before its end.
    """
    kinds: list[Callable[[random.Random], Fault]] = [
        lambda rng: RATE_LIMITED,
        lambda rng: SERVER_ERROR,
        lambda rng: DROPPED,
        lambda rng: MALFORMED,
        lambda rng: EMPTY,
        lambda rng: hang(timeouts.hang_s),
        lambda rng: dropped_after(rng.randint(0, 4)),
        lambda rng: malformed_after(rng.randint(0, 4)),
        lambda rng: stalled_after(rng.randint(0, 4), timeouts.stall_s),
        lambda rng: slow(timeouts.slow_s),
    ]

    def plan(model: str, number: int) -> Fault | None:
        rng = random.Random(f"{seed}:{model}:{number}")
        return rng.choice(kinds)(rng) if rng.random() < rate else None

    return plan


def config(
    url: str, run: str, timeouts: Timeouts, fallbacks: int, *, long: bool = False
) -> MoAConfig:
    """The MoA of run ``run``; ``long`` timeouts keep a hanging call open until a kill."""

    def agent(name: str) -> dict[str, Any]:
        return {"model": f"openai:{run}-{name}", "name": name, "base_url": url}

    return MoAConfig(
        layers=[[agent(f"p{i}") for i in range(1, PROPOSERS + 1)]],
        aggregator=agent("agg"),
        calls=CallSettings(
            aggregator_fallbacks=[agent(f"fb{i}") for i in range(1, fallbacks + 1)],
            # Long ones still below the overall limit, so calls stream
            # (calls.progress.watches_tokens) and the server's stream logs show who answered.
            timeout_s=120 if long else timeouts.total_s,
            first_token_timeout_s=110 if long else timeouts.first_token_s,
            idle_timeout_s=110 if long else timeouts.idle_s,
            max_retries=3,
            backoff_s=0.05,
            max_backoff_s=0.2,
        ),
    )


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """The error, then its causes and contexts."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


_BROKEN = re.compile(r"broke off after \d+ streamed tokens \((\w+)")
_ERROR_NAME = re.compile(r"\b([A-Z]\w*(?:Error|Exception))\b")


def reason(error: MoAError) -> str:
    """Why a run failed, in a few words: the error's type and its innermost cause's."""
    text = str(error)
    # The graph re-raises a failed aggregator without its cause: read the message too.
    if any(isinstance(e, StreamBrokenError) for e in _chain(error)) or _BROKEN.search(text):
        match = _BROKEN.search(text)
        return f"stream broke after tokens were shown ({match[1] if match else '?'})"
    names = _ERROR_NAME.findall(text)
    return f"{type(error).__name__}: {names[-1] if names else text[:60]}"


@dataclass
class Tally:
    """What became of the runs of one mode."""

    runs: int = 0
    answered: int = 0
    clean: Counter[str] = field(default_factory=Counter)
    stream_broken: int = 0  # clean errors whose cause is a stream broken after tokens shown
    reasons: Counter[str] = field(default_factory=Counter)
    unhandled: Counter[str] = field(default_factory=Counter)
    never_ended: int = 0
    spliced: int = 0
    wrong_answers: int = 0  # a final answer that is not one attempt's whole text
    calls_answered: int = 0
    examples: list[str] = field(default_factory=list)


async def faulty_runs(
    runs: int, rate: float, seed: int, concurrency: int, timeouts: Timeouts, fallbacks: int
) -> dict[str, Any]:
    tallies = {mode: Tally() for mode in MODES}
    loop_errors: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda loop, context: loop_errors.append(str(context.get("exception") or context))
    )
    plan = mixed_plan(rate, seed, timeouts)
    injected: Counter[str] = Counter()
    lock = threading.Lock()

    def counted(model: str, number: int) -> Fault | None:
        fault = plan(model, number)
        if fault is not None:
            with lock:
                injected[str(fault.status) if fault.kind == "status" else fault.kind] += 1
        return fault

    with fault_server(counted) as server:
        limit = asyncio.Semaphore(concurrency)

        def attempts(run: str) -> list[str]:
            """The whole text of every aggregator attempt of ``run`` (the server echoes)."""
            models = {f"{run}-agg", *(f"{run}-fb{i}" for i in range(1, fallbacks + 1))}
            with server.lock:
                requests = [r for r in server.requests if r["model"] in models]
            return [echo_reply(r) for r in requests]

        async def one(number: int) -> None:
            mode = MODES[number % len(MODES)]
            tally = tallies[mode]
            tally.runs += 1
            run = f"run{number}"
            streamed: list[str] = []
            state: dict[str, Any] = {}
            failed = False
            async with limit:
                graph: Any = create_moa(
                    config(server.url, run, timeouts, fallbacks),
                    stream_proposers=mode == "stream all",
                ).compile()
                question = {"messages": [HumanMessage(f"Question {number}?")]}
                try:
                    async with asyncio.timeout(RUN_LIMIT_S) as scope:
                        if mode == "invoke":
                            state = await graph.ainvoke(question)
                        elif mode == "answer whole":
                            async for event in stream_moa(graph, question, tokens=False):
                                if isinstance(event, Finished):
                                    state = event.state
                        else:
                            parts = graph.astream(question, stream_mode=["messages", "values"])
                            async for kind, payload in parts:
                                if kind == "values":
                                    state = payload
                                    continue
                                chunk, metadata = payload
                                if AGGREGATOR_TAG in metadata.get("tags", ()):
                                    streamed.append(chunk.text)
                except MoAError as error:
                    failed = True
                    tally.clean[type(error).__name__] += 1
                    tally.reasons[reason(error)] += 1
                    if reason(error).startswith("stream broke"):
                        tally.stream_broken += 1
                except TimeoutError as error:
                    failed = True
                    if scope.expired():
                        tally.never_ended += 1
                    else:  # a TimeoutError that escaped the core
                        tally.unhandled[type(error).__name__] += 1
                except Exception as error:  # what the benchmark exists to catch
                    failed = True
                    tally.unhandled[type(error).__name__] += 1
                    tally.examples.append(f"{run} {mode}: {type(error).__name__}: {error}"[:300])
            texts = attempts(run)
            text = "".join(streamed)
            if failed:
                if text and not any(t.startswith(text) for t in texts):
                    tally.spliced += 1
                    tally.examples.append(f"{run} {mode} failed, streamed {text!r}")
                return
            tally.answered += 1
            with server.lock:
                tally.calls_answered += sum(
                    n for model, n in server.calls.items() if model.startswith(f"{run}-")
                )
            answer = state["messages"][-1].text
            if answer not in texts:
                tally.wrong_answers += 1
                tally.examples.append(f"{run} {mode}: answer {answer!r}")
            if mode in STREAMED and text != answer:
                tally.spliced += 1
                tally.examples.append(f"{run} {mode}: streamed {text!r}, answer {answer!r}")

        await asyncio.gather(*(one(n) for n in range(runs)))
    return {"tallies": tallies, "loop errors": loop_errors, "injected": injected}


def killed_runs(
    kills: int, rate: float, seed: int, timeouts: Timeouts, fallbacks: int
) -> dict[str, int]:
    """SIGKILL CLI runs mid-layer, resume them, count calls repeated after the kill."""
    base = mixed_plan(rate, seed + 1, timeouts)
    kinds: dict[tuple[str, int], str | None] = {}
    lock = threading.Lock()

    def plan(model: str, number: int) -> Fault | None:
        if model.endswith("-p3") and number == 1:
            fault: Fault | None = hang(60)  # the slow agent the kill interrupts
        else:
            fault = base(model, number)
        with lock:
            kinds[(model, number)] = fault.kind if fault else None
        return fault

    repeated = resumed_ok = resumed_error = 0
    with fault_server(plan) as server, tempfile.TemporaryDirectory() as folder:

        def answered() -> set[str]:
            """Models a whole answer of which was sent to its end."""
            with server.lock, lock:
                return {
                    log.model
                    for log in server.streams
                    if log.outcome == "finished"
                    and kinds.get((log.model, log.number), "?") in ANSWERED_KINDS
                }

        store = str(Path(folder) / "checkpoints.sqlite")
        for number in range(kills):
            run = f"kill{number}"
            path = Path(folder) / f"{run}.yaml"
            # Long timeouts keep the slow agent's call open until the kill.
            data = config(server.url, run, timeouts, fallbacks, long=True).to_dict()
            path.write_text(yaml.safe_dump(data))
            common = ["-c", str(path), "--thread", run, "--checkpoints", store, "--json"]
            process = subprocess.Popen(
                [sys.executable, "-m", "moa_graph.cli.app", "ask", "Q?", *common],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            fast = {f"{run}-p1", f"{run}-p2"}
            deadline = time.monotonic() + 60
            while not fast <= answered() and process.poll() is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            time.sleep(2.0)  # the answers' checkpoint writes (durability="sync")
            process.send_signal(signal.SIGKILL)
            process.wait()
            with server.lock:
                before = dict(server.calls)
            done_before = {m for m in answered() if m.startswith(f"{run}-")}
            result = subprocess.run(
                [sys.executable, "-m", "moa_graph.cli.app", "ask", "--resume", *common],
                capture_output=True,
                text=True,
            )
            if result.returncode == 0:
                resumed_ok += 1
            else:
                resumed_error += 1
                lines = result.stderr.strip().splitlines() or ["(no message)"]
                print(f"{run} resumed with an error: {lines[-1]}", file=sys.stderr)
            with server.lock:
                repeated += sum(server.calls[m] - before.get(m, 0) for m in done_before)
    return {"resumed and answered": resumed_ok, "resumed, clean error": resumed_error,
            "repeated calls": repeated}  # fmt: skip


def table(args: argparse.Namespace, faulty: dict[str, Any], killed: dict[str, int]) -> str:
    tallies: dict[str, Tally] = faulty["tallies"]
    columns = [*tallies.values()]
    every = Tally(
        runs=sum(t.runs for t in columns),
        answered=sum(t.answered for t in columns),
        clean=sum((t.clean for t in columns), Counter()),
        stream_broken=sum(t.stream_broken for t in columns),
        unhandled=sum((t.unhandled for t in columns), Counter()),
        never_ended=sum(t.never_ended for t in columns),
        spliced=sum(t.spliced for t in columns),
        wrong_answers=sum(t.wrong_answers for t in columns),
        calls_answered=sum(t.calls_answered for t in columns),
    )
    columns.append(every)

    def row(name: str, cell: Callable[[Tally], str], streamed_only: bool = False) -> str:
        cells = [
            "n/a" if streamed_only and mode not in (*STREAMED, "all") else cell(tally)
            for mode, tally in zip([*MODES, "all"], columns, strict=True)
        ]
        return f"| {name} | {' | '.join(cells)} |"

    def clean(tally: Tally) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(tally.clean.items()))
        return f"{tally.clean.total()} ({kinds})" if kinds else "0"

    def unhandled(tally: Tally) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(tally.unhandled.items()))
        return f"{tally.unhandled.total()} ({kinds})" if kinds else "0"

    lines = [
        f"| {args.runs} runs, {args.rate:.0%} faults per call | {' | '.join(MODES)} | all |",
        "|---|---|---|---|---|---|",
        row("runs", lambda t: str(t.runs)),
        row("answered", lambda t: str(t.answered)),
        row("ended in a clean error", clean),
        row("... of which a stream broken after its first tokens", lambda t: str(t.stream_broken)),
        row("unhandled exceptions", unhandled),
        row("runs that never ended", lambda t: str(t.never_ended)),
        row("spliced streams", lambda t: str(t.spliced), streamed_only=True),
        row("answers not one attempt's text", lambda t: str(t.wrong_answers)),
        row(
            f"calls per answered run (fault-free: {CALLS_WITHOUT_FAULTS})",
            lambda t: f"{t.calls_answered / max(t.answered, 1):.2f}",
        ),
        "",
        f"| {args.kills} CLI runs SIGKILLed mid-layer, then `--resume` | |",
        "|---|---|",
        f"| resumed runs answered / clean error | {killed['resumed and answered']} / "
        f"{killed['resumed, clean error']} |",
        f"| calls repeated after resume | {killed['repeated calls']} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fallbacks", type=int, default=1, help="aggregator fallbacks")
    parser.add_argument("--idle-timeout", type=float, default=Timeouts.idle_s)
    args = parser.parse_args()
    os.environ.pop("OPENAI_API_KEY", None)
    timeouts = Timeouts(idle_s=args.idle_timeout)
    started = time.perf_counter()
    faulty = asyncio.run(
        faulty_runs(args.runs, args.rate, args.seed, args.concurrency, timeouts, args.fallbacks)
    )
    faulty_s = time.perf_counter() - started
    killed = killed_runs(args.kills, args.rate, args.seed, timeouts, args.fallbacks)
    print(table(args, faulty, killed))
    injected = ", ".join(f"{k} {n}" for k, n in sorted(faulty["injected"].items()))
    print(f"\nfaults injected in the {args.runs} runs: {injected}")
    print(f"errors in background tasks (loop exception handler): {len(faulty['loop errors'])}")
    for error in faulty["loop errors"][:5]:
        print(f"  {error[:300]}")
    reasons: Counter[str] = sum((t.reasons for t in faulty["tallies"].values()), Counter())
    causes = "; ".join(f"{k}: {n}" for k, n in reasons.most_common()) or "none"
    print(f"clean errors by cause: {causes}")
    for tally in faulty["tallies"].values():
        for example in tally.examples[:5]:
            print(f"  {example}")
    total_s = time.perf_counter() - started
    print(f"\n{faulty_s:.0f} s for the runs, {total_s - faulty_s:.0f} s for the kills")


if __name__ == "__main__":
    main()
