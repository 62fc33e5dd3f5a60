"""A sandbox for untrusted, model-written Python: CPython compiled to WebAssembly, run by wasmtime.

:func:`run_python` runs a program in a fresh instance of CPython 3.12 built for WASI
(:mod:`moa_graph.sandbox.runtime`). What the program can reach is what WebAssembly gives
it, the same for root and for a normal user, in a container or on a laptop:

* **No host files**: the standard library is inside the ``.wasm`` file, and no folder
  is mounted, not even a scratch one.
* **No environment, sockets, processes, threads or signals**: no variable is passed,
  and WASI preview 1 has no call that opens a socket or starts a process.
* **Memory**: at most ``memory_mb`` of linear memory (``Store.set_limits``); a bigger
  allocation is a ``MemoryError`` inside.
* **Time**: epoch interruption stops the program at the limit wherever it is. The host
  answers WASI ``poll_oneoff`` itself, at once, so ``time.sleep`` returns at once and
  no host call outlives the limit.
* **Output**: the program's prints are discarded inside; of what it writes to the raw
  stdout only the last 1 MiB is kept, and stderr goes nowhere.

Inside, :mod:`moa_graph.sandbox.guest` runs the program and reports how it ended and,
when asked, what each of the given examples printed. The host checks the report's shape
and nothing more: the caller compares outputs with what it expects (see
:mod:`moa_graph.strategies.code_check`), so a program can claim no more examples than there are.
"""

from __future__ import annotations

import atexit
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from moa_graph.sandbox import runtime as wasi_runtime

if TYPE_CHECKING:
    import wasmtime

Status = Literal["passed", "failed", "timeout", "error"]

_GUEST = (Path(__file__).parent / "guest.py").read_text(encoding="utf-8")
_TICK_S = 0.02
_REPORT_BYTES = 1 << 20
_OUTPUT_CHARS = 2000  # as in guest.py
_DETAIL_CHARS = 300
_SUBSCRIPTION, _EVENT = 48, 32  # sizes of WASI's subscription and event records
_EINVAL = 28
_STARTING = threading.Lock()
_STOPPING = threading.Event()


@dataclass(frozen=True)
class ExecutionResult:
    """How a sandboxed program ended.

    Attributes:
        status: ``"passed"``: it ran to its end. ``"failed"``: it raised, exited
            early (``sys.exit`` counts: it skipped the rest of its checks) or hit the
            memory limit. ``"timeout"``: no end within the time limit. ``"error"``: it
            never ran, because it does not compile.
        detail: One line saying why, e.g. ``"AssertionError"`` or
            ``"no result within 10s"``.
        outputs: When examples were given and the program ran to its end: what each
            printed (None when it raised or printed more than 2,000 characters), one
            per example. Otherwise empty.
    """

    status: Status
    detail: str
    outputs: tuple[str | None, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether the program ran to its end."""
        return self.status == "passed"


def run_python(
    source: str,
    *,
    examples: Sequence[str] | None = None,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
) -> ExecutionResult:
    """Run Python source in the WebAssembly sandbox; never raises for anything the code does.

    Safe to call from several threads at once; each run has its own store, closed after.

    Args:
        source: A whole program, run as ``__main__``.
        examples: Doctest example sources (``add(1, 2)``) to run after it, each in a
            copy of its globals; their outputs come back in the result (when none is
            given, the result has no outputs).
        timeout_s: Wall-clock limit of the whole run, the interpreter's start included.
        memory_mb: Limit of the program's memory.

    Raises:
        SandboxUnavailableError: The runtime is not installed (``moa models install``).
        RuntimeError: The sandbox itself cannot start a program.
    """
    import wasmtime

    engine, instance = _sandbox()
    texts = [source, *(examples or ())]
    stdout = _Tail(_REPORT_BYTES)
    wasi = wasmtime.WasiConfig()
    # -I: no environment or user folders consulted. Hexadecimal arguments: no NUL cuts
    # one short, and no character fails to encode.
    hexed = [text.encode("utf-8", "surrogatepass").hex() for text in texts]
    wasi.argv = ["python", "-I", "-c", _GUEST, *hexed]
    wasi.stdout_custom = stdout.write
    store = wasmtime.Store(engine)
    try:
        store.set_wasi(wasi)
        store.set_limits(memory_size=memory_mb * 2**20)
        store.set_epoch_deadline(math.ceil(timeout_s / _TICK_S) + 1)
        start = instance.instantiate(store).exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
        ending: int | str | None = 0
    except wasmtime.ExitTrap as exit_:
        ending = exit_.code
    except wasmtime.Trap as trap:
        code = trap.trap_code
        ending = None if code == wasmtime.TrapCode.INTERRUPT else f"trap {code and code.name}"
    except wasmtime.WasmtimeError as error:
        raise RuntimeError(f"the sandbox cannot run the program: {error}") from error
    finally:
        store.close()
    if ending is None:
        return ExecutionResult("timeout", f"no result within {timeout_s:g}s")
    return _result(stdout.last_line(), ending, len(examples) if examples is not None else None)


def prepare() -> None:
    """Ready the sandbox now: compile the runtime for this machine, unless it is cached.

    ``moa models install`` calls it, so that the first check does not wait seconds.

    Raises:
        SandboxUnavailableError: The runtime is not installed.
    """
    _sandbox()


def _sandbox() -> tuple[wasmtime.Engine, wasmtime.InstancePre]:
    """Return the engine and the runtime ready to instantiate, made by the first caller."""
    with _STARTING:
        return _started()


@cache  # a failure is not cached: installing the runtime is enough, no restart needed
def _started() -> tuple[wasmtime.Engine, wasmtime.InstancePre]:
    """Make the engine, with its epoch ticking, and the runtime ready to instantiate."""
    import wasmtime

    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    linker.allow_shadowing = True
    i32 = wasmtime.ValType.i32()
    poll = wasmtime.FuncType([i32, i32, i32, i32], [i32])
    linker.define_func("wasi_snapshot_preview1", "poll_oneoff", poll, _poll_at_once, True)
    instance = linker.instantiate_pre(wasi_runtime.load_module(engine))
    ticker = threading.Thread(target=_tick, args=(engine,), name="moa-sandbox-epoch", daemon=True)
    ticker.start()
    atexit.register(_close, ticker, instance, engine)
    return engine, instance


def _tick(engine: wasmtime.Engine) -> None:
    while not _STOPPING.wait(_TICK_S):
        engine.increment_epoch()


def _close(ticker: threading.Thread, *objects: wasmtime.InstancePre | wasmtime.Engine) -> None:
    """At exit, while wasmtime can still free them: stop the ticker, then free the runtime."""
    _STOPPING.set()
    ticker.join()
    for item in objects:
        item.close()


def _poll_at_once(
    caller: wasmtime.Caller, subscriptions: int, events: int, count: int, written: int
) -> int:
    """WASI ``poll_oneoff``: every subscription (a sleep's clock, a file) is ready now."""
    import wasmtime

    memory = caller["memory"]
    assert isinstance(memory, wasmtime.Memory)
    size = memory.data_len(caller)
    if (
        not 0 < count <= 64
        or max(subscriptions + count * _SUBSCRIPTION, events + count * _EVENT) > size
    ):
        return _EINVAL
    records = memory.read(caller, subscriptions, subscriptions + count * _SUBSCRIPTION)
    answer = bytearray(count * _EVENT)
    for n in range(count):
        record = records[n * _SUBSCRIPTION : (n + 1) * _SUBSCRIPTION]
        answer[n * _EVENT : n * _EVENT + 8] = record[:8]  # userdata
        answer[n * _EVENT + 10] = record[8]  # the event's type is the subscription's
    memory.write(caller, answer, events)
    memory.write(caller, count.to_bytes(4, "little"), written)
    return 0


class _Tail:
    """Keeps the last ``limit`` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()

    def write(self, data: bytes) -> None:
        self._data += data[-self._limit :]
        if len(self._data) > 2 * self._limit:
            del self._data[: -self._limit]

    def last_line(self) -> str:
        lines = self._data[-self._limit :].decode("utf-8", "replace").splitlines()
        return next((line for line in reversed(lines) if line.strip()), "")


def _result(last_line: str, ending: int | str, examples: int | None) -> ExecutionResult:
    """Read the guest's report, trusting only its shape; without one, say how the run ended."""
    try:
        report = json.loads(last_line)
        status, detail, outputs = report["status"], str(report["detail"]), report["outputs"]
    except (ValueError, KeyError, TypeError, RecursionError):  # not a report of the guest's
        status = "none"
    if ending != 0 or status not in ("passed", "failed", "error"):
        why = f"exit code {ending}" if isinstance(ending, int) else ending
        return ExecutionResult("failed", f"the program ended before its report ({why})")
    if status != "passed" or examples is None:
        return ExecutionResult(status, detail[:_DETAIL_CHARS])
    if not isinstance(outputs, list) or len(outputs) != examples:
        outputs = [None] * examples
    kept = tuple(o if isinstance(o, str) and len(o) <= _OUTPUT_CHARS else None for o in outputs)
    return ExecutionResult(status, detail[:_DETAIL_CHARS], kept)
