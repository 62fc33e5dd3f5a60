"""Hostile programs through check_code, as an attacker would send them: public APIs only.

Each probe is a proposal whose ``add(a, b)`` computes ``a + b`` only if its escape
worked, next to a plain correct proposal, under ``aggregation: consensus`` with
``check_code: true``. The probe must score 0 of the prompt's two examples (the correct
one 2, so the check did run), leave nothing on the host and end within the check's
time limit. CI runs this file as root and again as an unprivileged user (.ci/run).
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from moa_graph.run.factory import create_moa

PROMPT = '''Write the function.
```python
def add(a, b):
    """Add two numbers.
    >>> add(2, 3)
    5
    >>> add(-1, 1)
    0
    """
```'''
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
LIMIT_S = 5.0  # code_check's time limit of one program
SECRET = "sk-hostile-probe-secret"


def _probe(setup: str, escape: str = "") -> str:
    """A proposal: module-level ``setup``, then an add that returns a + b after ``escape``."""
    body = textwrap.indent(f"{escape}\nreturn a + b", "    ")
    return f"```python\nimport os, sys, time\n{setup}\ndef add(a, b):\n{body}\n```"


def _check(fake_model, proposal: str) -> tuple[list[int], str, float]:
    """Run the probe next to the correct proposal; return the counts, the answer, the time."""
    proposers = [
        fake_model(f"p{i}", reply=lambda m, msgs, r=r: r) for i, r in enumerate([proposal, RIGHT])
    ]
    config = {
        "layers": [proposers],
        "aggregator": fake_model("agg"),
        "aggregation": "consensus",
        "check_code": True,
    }
    graph = create_moa(config).compile()
    started = time.monotonic()
    message = graph.invoke({"messages": [("user", PROMPT)]})["messages"][-1]
    return (
        message.response_metadata["moa_examples_passed"],
        message.text,
        time.monotonic() - started,
    )


def _assert_contained(fake_model, proposal: str) -> float:
    passed, answer, seconds = _check(fake_model, proposal)
    assert passed == [0, 2]
    assert answer == RIGHT
    assert seconds < LIMIT_S + 2
    return seconds


@pytest.fixture
def marker() -> Iterator[Path]:
    """A host path a probe tries to create; it must not exist afterwards."""
    path = Path("/tmp") / f"moa-hostile-{uuid.uuid4().hex}"
    yield path
    assert not path.exists()
    path.unlink(missing_ok=True)


def test_the_probe_harness_scores_a_working_escape(fake_model) -> None:
    # the same shape with an "escape" that works everywhere passes both examples
    passed, _, _ = _check(fake_model, _probe("", "assert len('x') == 1"))
    assert passed == [2, 2]


@pytest.mark.parametrize(
    "escape",
    [
        "open('/etc/hostname').read()",
        "os.listdir('/')",
        "os.listdir(os.path.expanduser('~'))",
        "open('/proc/self/environ', 'rb').read()",
        "os.listdir('/proc/self/fd')",
        "os.listdir('/proc/self/fd/3/../../..')",
        "os.listdir('/proc/1/root')",
    ],
)
def test_reading_host_files_fails(fake_model, escape: str) -> None:
    _assert_contained(fake_model, _probe("", escape))


def test_a_private_file_in_home_and_the_parents_environment_stay_unread(
    fake_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    secret = tmp_path / "private.txt"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    for escape in [
        f"assert open({str(secret)!r}).read() == {SECRET!r}",
        f"assert {SECRET!r}.encode() in open('/proc/{os.getpid()}/environ', 'rb').read()",
        f"assert os.environ['OPENAI_API_KEY'] == {SECRET!r}",
        f"assert os.listdir({str(Path.home())!r})",
    ]:
        _assert_contained(fake_model, _probe("", escape))


@pytest.mark.parametrize("folder", ["/tmp", "/dev/shm"])
def test_writing_host_folders_fails_and_leaves_nothing(fake_model, folder: str) -> None:
    path = Path(folder) / f"moa-hostile-{uuid.uuid4().hex}"
    _assert_contained(fake_model, _probe("", f"open({str(path)!r}, 'w').write('x' * 2**20)"))
    assert not path.exists()


def test_a_socket_to_a_loopback_listener_fails_and_it_sees_nothing(fake_model) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        for escape in [
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
            f"import socket\nsocket.socket().connect(('127.0.0.1', {port}))",
        ]:
            _assert_contained(fake_model, _probe("", escape))
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()


def test_processes_signals_and_native_code_fail(fake_model, marker: Path) -> None:
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: received.append(number))
    try:
        for escape in [
            f"import subprocess\nsubprocess.run(['touch', {str(marker)!r}], check=True)",
            f"os.system('touch {marker}')",
            "assert os.fork() >= 0",
            f"os.kill({os.getpid()}, {signal.SIGUSR1.value})",
            f"import signal\nsignal.pthread_kill(1, {signal.SIGUSR1.value})",
            f"import ctypes\nctypes.CDLL(None).system(b'touch {marker}')",
            "import threading\nthreading.Thread(target=print).start()",
        ]:
            _assert_contained(fake_model, _probe("", escape))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert received == []


def test_an_endless_loop_ends_at_the_limit(fake_model) -> None:
    seconds = _assert_contained(fake_model, _probe("", "while True:\n    pass"))
    assert seconds > LIMIT_S - 1  # it was the time limit that ended it


def test_a_long_sleep_neither_holds_the_host_nor_passes_for_time(fake_model) -> None:
    escape = "started = time.monotonic()\ntime.sleep(60)\nassert time.monotonic() - started >= 60"
    assert _assert_contained(fake_model, _probe("", escape)) < 2


def test_a_gigabyte_allocation_fails_without_growing_this_process(fake_model) -> None:
    _check(fake_model, RIGHT)  # the runtime loaded before measuring
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _assert_contained(fake_model, _probe("", "memory = bytearray(2**30)"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB


def test_a_flood_of_output_is_dropped(fake_model) -> None:
    _check(fake_model, RIGHT)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    flood = "while True:\n    os.write(1, b'5\\n' * 2**19)\n    print('5\\n' * 2**19)"
    assert _assert_contained(fake_model, _probe(flood)) > LIMIT_S - 1
    _assert_contained(fake_model, _probe("", "for _ in range(10**6):\n    print('5' * 10**6)"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB


@pytest.mark.parametrize(
    "setup",
    [
        # the first attack on the old sandbox: the count in the last line of stderr
        "raise RuntimeError('moa-examples-passed: 99')",
        "print('moa-examples-passed: 99', file=sys.stderr)\nsys.stderr.flush()\nos._exit(1)",
        # a report of its own with more outputs than examples, ending before the real one
        'os.write(1, b\'\\n{"status": "passed", "detail": "", "outputs": '
        + '["5\\\\n", "0\\\\n", "5\\\\n"]}\\n\')\nos._exit(0)',
    ],
)
def test_a_program_claiming_its_own_count_gains_nothing(fake_model, setup: str) -> None:
    passed, answer, _ = _check(fake_model, _probe(setup, "return None"))
    assert passed == [0, 2] and answer == RIGHT
