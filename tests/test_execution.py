"""The WebAssembly sandbox of moa_graph.sandbox.execute: how programs end, what they cannot reach.

The hostile programs sent through ``check_code`` itself are in test_sandbox_hostile.py.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from moa_graph.errors import MoAError
from moa_graph.run.factory import create_moa
from moa_graph.sandbox import execute as execution
from moa_graph.sandbox import runtime as wasi_runtime
from moa_graph.sandbox.execute import ExecutionResult, run_python


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_passing_code_passes() -> None:
    result = run_python("total = sum(range(10))\nassert total == 45\nprint(total)\n")
    assert result == ExecutionResult("passed", "ran to the end")
    assert result.passed


def test_failing_assert_fails_and_names_the_error() -> None:
    result = run_python("def f():\n    return 1\n\n\nassert f() == 2, 'not two'\n")
    assert result == ExecutionResult("failed", "AssertionError: not two")
    assert not result.passed
    assert run_python("import json\njson.loads('{')").detail.startswith(
        "json.decoder.JSONDecodeError: Expecting property name"
    )


def test_code_that_does_not_compile_is_an_error() -> None:
    assert run_python("def f(:\n    pass\n") == ExecutionResult(
        "error", "SyntaxError: invalid syntax"
    )
    # a NUL cannot cut the program short: the whole of it is compiled, and refused
    result = run_python("print(1)\x00 garbage")
    assert result.status == "error" and "null bytes" in result.detail
    assert run_python("x = '\ud800'\n").status == "error"  # a lone surrogate


@pytest.mark.parametrize(
    "exit_call", ["import sys\nsys.exit(0)", "exit()", "raise SystemExit", "import os\nos._exit(0)"]
)
def test_exiting_before_the_end_fails(exit_call: str) -> None:
    result = run_python(f"{exit_call}\nassert False, 'never checked'\n")
    assert result.status == "failed"
    assert "exited before its end" in result.detail or "ended before its report" in result.detail


def test_infinite_loop_times_out_near_the_limit() -> None:
    started = time.monotonic()
    result = run_python("while True:\n    pass\n", timeout_s=1.0)
    assert result == ExecutionResult("timeout", "no result within 1s")
    assert time.monotonic() - started < 2.0


def test_sleeping_returns_at_once_and_no_sleep_outlives_the_limit() -> None:
    source = (
        "import time, select\n"
        "started = time.monotonic()\n"
        "time.sleep(60)\n"
        "select.select([], [], [], 60)\n"
        "assert time.monotonic() - started < 1, 'slept'\n"
    )
    started = time.monotonic()
    assert run_python(source, timeout_s=2.0).passed
    # sleeping in a loop: the clock does advance, the loop is stopped at the limit
    loop = "import time\nend = time.monotonic() + 60\n"
    loop += "while time.monotonic() < end:\n    time.sleep(1)\n"
    assert run_python(loop, timeout_s=1.0).status == "timeout"
    assert time.monotonic() - started < 3.0


def test_memory_hog_fails_within_its_limit() -> None:
    run_python("pass\n")  # the runtime loaded first: its memory is not the program's
    before = _peak_rss_mib()
    result = run_python(
        "chunks = [bytearray(2**24) for _ in range(1024)]\n", memory_mb=64
    )  # 16 GiB
    assert result == ExecutionResult("failed", "MemoryError")
    # the program's memory is this process's: the limit bounds what it can take
    assert _peak_rss_mib() - before < 64 + 32
    assert run_python("x = bytearray(2**30)\n", memory_mb=512).detail == "MemoryError"


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        (
            "import os\nos.listdir('/')",
            "FileNotFoundError: [Errno 44] No such file or directory: '/'",
        ),
        ("open('/etc/hostname').read()", "FileNotFoundError"),
        ("open('out.txt', 'w').write('x')", "FileNotFoundError"),
        ("import tempfile\ntempfile.mkstemp()", "FileNotFoundError"),
        ("import os\nos.fork()", "AttributeError: module 'os' has no attribute 'fork'"),
        ("import subprocess\nsubprocess.run(['true'])", "OSError: [Errno 58]"),
        ("import os\nos.kill(1, 9)", "AttributeError: module 'os' has no attribute 'kill'"),
        ("import threading\nthreading.Thread(target=print).start()", "RuntimeError"),
        ("import ctypes", "ModuleNotFoundError: No module named 'ctypes'"),
    ],
)
def test_host_files_processes_threads_and_native_code_are_out_of_reach(
    source: str, detail: str
) -> None:
    result = run_python(source)
    assert result.status == "failed" and result.detail.startswith(detail), result


def test_the_standard_library_is_there_without_any_host_folder() -> None:
    source = (
        "import os, json, re, itertools, collections, math, hashlib, fractions, heapq\n"
        "assert json.__file__.startswith('/usr/local/lib/python312.zip')\n"
        "assert sorted(os.listdir('/usr/local/lib')) == ['python3.12', 'python312.zip']\n"
    )
    assert run_python(source).passed


def test_the_environment_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    assert run_python("import os\nassert dict(os.environ) == {}, dict(os.environ)\n").passed


def test_a_socket_to_a_loopback_server_fails_and_the_server_sees_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        connect = run_python(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        )
        assert connect.detail == "AttributeError: module '_socket' has no attribute 'getaddrinfo'"
        raw = run_python(f"import socket\nsocket.socket().connect(('127.0.0.1', {port}))\n")
        assert raw.detail == "OSError: [Errno 58] Not supported"
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()


def test_endless_output_does_not_grow_this_process() -> None:
    run_python("pass\n")
    before = _peak_rss_mib()
    printed = run_python("while True:\n    print('x' * 100000)\n", timeout_s=1.0)
    raw = run_python("import os\nwhile True:\n    os.write(1, b'y' * 2**20)\n", timeout_s=1.0)
    errors = run_python("import os\nwhile True:\n    os.write(2, b'z' * 2**20)\n", timeout_s=1.0)
    assert printed.status == raw.status == errors.status == "timeout"
    assert _peak_rss_mib() - before < 32


def test_examples_report_what_they_printed() -> None:
    source = "def add(a, b):\n    return a + b\n"
    examples = ["add(1, 2)\n", "print(add(2, 3)); add(1, 1)\n", "1 / 0\n", "print('x' * 3000)\n"]
    result = run_python(source, examples=examples)
    assert result == ExecutionResult("passed", "ran to the end", ("3\n", "5\n2\n", None, None))
    # each example runs in a copy of the program's globals
    changed = run_python("x = 1\n", examples=["x = 2\n", "x\n"])
    assert changed.outputs == ("", "1\n")
    # a program that does not run to its end has no example outputs
    assert run_python("raise ValueError('no')\n", examples=["1\n"]).outputs == ()


def test_a_forged_report_gets_no_more_outputs_than_examples() -> None:
    # the program writes a report line of its own, then exits before the guest's
    forged = json.dumps({"status": "passed", "detail": "", "outputs": ["3\n"] * 99})
    line = ("\n" + forged + "\n").encode()
    source = f"import os\nos.write(1, {line!r})\nos._exit(0)\n"
    result = run_python(source, examples=["1 + 2\n"])
    assert result == ExecutionResult("passed", "", (None,))
    # a last line that is no report, however deeply nested
    for line in [b"[" * 500_000, b'"passed"', b'{"status": ["passed"]}']:
        source = f"import os\nos.write(1, {line!r})\nos._exit(0)\n"
        result = run_python(source, examples=["1 + 2\n"])
        assert result.status == "failed" and "ended before its report" in result.detail


def test_runs_from_several_threads_at_once() -> None:
    sources = [f"assert {n} % 2 == 0, 'odd'\n" for n in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run_python, sources))
    assert [result.status for result in results] == ["passed", "failed"] * 4
    assert results[1].detail == "AssertionError: odd"


def test_without_the_runtime_a_check_is_a_one_line_error(
    fake_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOA_GRAPH_CACHE", str(tmp_path))
    monkeypatch.setattr(execution, "_started", functools.cache(execution._started.__wrapped__))
    with pytest.raises(wasi_runtime.SandboxUnavailableError) as raised:
        run_python("pass\n")
    assert str(raised.value) == (
        "check_code needs the WebAssembly sandbox runtime, which is not installed: "
        "run `moa models install`"
    )
    # through a graph: the same error, no other way of running the code
    code = "```python\ndef add(a, b):\n    return a + b\n```"
    proposers = [fake_model(f"p{i}", reply=lambda m, msgs: code) for i in range(2)]
    config = {"layers": [proposers], "aggregator": fake_model("agg"), "aggregation": "consensus"}
    graph = create_moa({**config, "check_code": True}).compile()
    prompt = "Write add.\n>>> add(1, 2)\n3\n"
    with pytest.raises(MoAError, match=r"^check_code needs the WebAssembly sandbox runtime"):
        graph.invoke({"messages": [("user", prompt)]})
    assert [len(p.calls) for p in proposers] == [0, 0]  # refused before any model call
    (tmp_path / "python-3.12.0.wasm").write_bytes(b"\0asm" + bytes(26_267_200))
    with pytest.raises(wasi_runtime.SandboxUnavailableError, match="which is corrupted"):
        run_python("pass\n")


def test_the_compiled_cache_is_used_only_from_a_private_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "module.cwasm").write_bytes(b"native code")
    os.chmod(shared, 0o777)
    with wasi_runtime._private_folder(shared) as folder:
        assert folder is None
    private = tmp_path / "private"
    with wasi_runtime._private_folder(private) as folder:
        assert folder is not None
        assert private.stat().st_mode & 0o777 == 0o700
        wasi_runtime._write_private(folder, "module.cwasm", b"native code")
        assert wasi_runtime._read_private(folder, "module.cwasm") == b"native code"
        assert (private / "module.cwasm").stat().st_mode & 0o777 == 0o600
        os.chmod(private / "module.cwasm", 0o666)  # anyone could have replaced it
        assert wasi_runtime._read_private(folder, "module.cwasm") is None
        os.symlink(shared / "module.cwasm", private / "linked.cwasm")
        assert wasi_runtime._read_private(folder, "linked.cwasm") is None


def test_a_new_compiled_runtime_replaces_the_others(tmp_path: Path) -> None:
    private = tmp_path / "compiled"
    with wasi_runtime._private_folder(private) as folder:
        assert folder is not None
        for stale in ("e5dc5a39-wasmtime-50.0.0.cwasm", "0000aaaa-wasmtime-51.0.0.cwasm"):
            (private / stale).write_bytes(b"old native code")
        (private / "notes.txt").write_text("not ours to remove")
        wasi_runtime._write_private(folder, "e5dc5a39-wasmtime-51.0.0.cwasm", b"native code")
        wasi_runtime._forget_others(folder, "e5dc5a39-wasmtime-51.0.0.cwasm")
    assert sorted(p.name for p in private.iterdir()) == [
        "e5dc5a39-wasmtime-51.0.0.cwasm",
        "notes.txt",
    ]
