"""The sandbox of moa_graph.execution: what a program can no longer do, and clean-up."""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from moa_graph import execution
from moa_graph.execution import ExecutionResult, run_python

ROOT = os.geteuid() == 0


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_passing_code_passes() -> None:
    result = run_python("total = sum(range(10))\nassert total == 45\nprint(total)\n")
    assert result == ExecutionResult("passed", "ran to the end")
    assert result.passed


def test_failing_assert_fails_and_names_the_error() -> None:
    result = run_python("def f():\n    return 1\n\n\nassert f() == 2\n")
    assert result == ExecutionResult("failed", "AssertionError")
    assert not result.passed


def test_code_that_does_not_compile_is_an_error() -> None:
    result = run_python("def f(:\n    pass\n")
    assert result.status == "error"
    assert result.detail.startswith("SyntaxError")


@pytest.mark.parametrize(
    "exit_call", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "exit()"]
)
def test_exiting_before_the_end_fails(exit_call: str) -> None:
    result = run_python(f"{exit_call}\nassert False, 'never checked'\n")
    assert result.status == "failed"
    assert "exited before its end" in result.detail


def test_infinite_loop_times_out_near_the_limit() -> None:
    started = time.monotonic()
    result = run_python("while True:\n    pass\n", timeout_s=1.0)
    assert result == ExecutionResult("timeout", "no result within 1s")
    assert time.monotonic() - started < 4.0


def test_memory_hog_fails_without_harming_the_parent() -> None:
    before = _peak_rss_kib()
    result = run_python("chunks = [bytearray(2**28) for _ in range(64)]\n", memory_mb=256)  # 16 GiB
    assert result.status == "failed"
    assert result.detail.startswith("MemoryError") and "256 MB" in result.detail
    assert _peak_rss_kib() - before < 100 * 1024


def test_fork_loop_fails_and_leaves_no_process_behind() -> None:
    source = (
        "import os, time\n"
        "group, forked = os.getpgid(0), 0\n"
        "for _ in range(50):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "        forked += 1\n"
        "    except OSError:\n"
        "        pass\n"
        "raise RuntimeError(f'group={group} forked={forked}')\n"
    )
    result = run_python(source)
    match = re.search(r"group=(\d+) forked=(\d+)", result.detail)
    assert result.status == "failed" and match, result
    assert match[2] == "0"
    with pytest.raises(ProcessLookupError):  # the whole process group is gone
        os.killpg(int(match[1]), 0)


def test_threads_are_refused_by_the_process_limit() -> None:
    # No audit event covers threads: this is the kernel's RLIMIT_NPROC at work.
    source = "import threading\nthreading.Thread(target=print).start()\n"
    assert run_python(source) == ExecutionResult("failed", "RuntimeError: can't start new thread")


def test_deleting_or_overwriting_a_file_outside_fails(tmp_path: Path) -> None:
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for source in [
        f"import os\nos.remove({str(victim)!r})\n",
        f"import pathlib\npathlib.Path({str(victim)!r}).unlink()\n",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n",
        f"import os\nos.rename({str(victim)!r}, 'stolen.txt')\n",
        f"open({str(victim)!r}, 'w').write('gone')\n",
    ]:
        result = run_python(source)
        assert result.status == "failed" and "PermissionError" in result.detail, source
    assert victim.read_text() == "precious"


@pytest.mark.skipif(not ROOT, reason="the child drops to nobody only when the caller is root")
def test_the_unprivileged_user_holds_where_the_python_guard_is_bypassed(tmp_path: Path) -> None:
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    # A path relative to a directory descriptor escapes the guard's path check.
    source = (
        "import os\n"
        "assert (os.getuid(), os.getgid()) == (65534, 65534)\n"
        f"directory = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
        "os.open('keep.txt', os.O_WRONLY | os.O_TRUNC, dir_fd=directory)\n"
    )
    result = run_python(source)
    assert result.status == "failed" and "[Errno 13] Permission denied" in result.detail
    assert victim.read_text() == "precious"


def test_socket_to_a_loopback_server_fails_and_the_server_sees_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = run_python(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        )
        assert result.status == "failed" and "socket" in result.detail
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()


def test_the_network_namespace_alone_hides_loopback() -> None:
    prefix = execution._network_isolation(ROOT)
    if not prefix:
        pytest.skip("unshare --net does not work here")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
        done = subprocess.run(
            [*prefix, sys.executable, "-I", "-c", probe], capture_output=True, text=True
        )
        assert done.returncode != 0 and "Network is unreachable" in done.stderr
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()


def test_huge_file_is_capped() -> None:
    result = run_python("with open('big.bin', 'wb') as f:\n    f.write(b'0' * (64 * 2**20))\n")
    assert result == ExecutionResult("failed", "OSError: [Errno 27] File too large")


def test_working_directory_is_fresh_private_and_removed() -> None:
    source = (
        "import os, tempfile\n"
        "assert os.listdir('.') == []\n"
        "open('out.txt', 'w').write('x')\n"
        "assert os.path.dirname(tempfile.mkstemp()[1]) == os.getcwd()\n"
        "raise RuntimeError(os.getcwd())\n"
    )
    result = run_python(source)
    assert result.detail.startswith("RuntimeError: "), result
    workdir = Path(result.detail.removeprefix("RuntimeError: "))
    assert workdir != Path.cwd() and workdir.name.startswith("moa-exec-")
    assert not workdir.exists()


def test_parent_environment_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    source = (
        "import os\n"
        "assert 'OPENAI_API_KEY' not in os.environ\n"
        "assert 'sk-test-secret' not in repr(os.environ)\n"
    )
    assert run_python(source).passed


def test_endless_output_does_not_grow_the_parent() -> None:
    before = _peak_rss_kib()
    stdout = run_python("while True:\n    print('x' * 1000)\n", timeout_s=1.0)
    stderr = run_python("import sys\nwhile True:\n    sys.stderr.write('y' * 65536)\n")
    assert stdout.status == "timeout"
    assert stderr.status == "failed" and len(stderr.detail) <= 300  # stopped by the file limit
    assert _peak_rss_kib() - before < 50 * 1024


def test_runs_from_several_threads_at_once() -> None:
    sources = [f"assert {n} % 2 == 0, 'odd'\n" for n in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run_python, sources))
    assert [result.status for result in results] == ["passed", "failed"] * 4
    assert results[1].detail == "AssertionError: odd"
