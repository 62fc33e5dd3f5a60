"""A sandbox for untrusted, model-generated Python (HumanEval's tests).

:func:`run_python` runs source in a fresh ``python -I`` process, confined by layers:

* **Process**: own session and process group, killed as a whole at the wall-clock limit
  and in any case before it is reaped; a fresh temporary working directory, removed
  after; a minimal environment (no API keys); no stdin or stdout; only the tail of its
  stderr is read.
* **Kernel limits**: address space, CPU seconds, file size (8 MiB, stderr included), no
  core dumps, and one process per user: it can start neither processes nor threads.
* **Network namespace** (``unshare --net``, where it works): no interfaces, not even
  loopback.
* **Unprivileged user**: when the caller is root, the child becomes nobody (65534) once
  its limits are set, so it cannot write, delete or signal anything of the caller's.
  Import directories nobody cannot read (a pyenv under ``/root``) stay importable
  through descriptors opened before the drop.
* **Python guard**: an audit hook, which Python code cannot remove, refuses fork, exec,
  signals, sockets, ctypes calls, raising limits, links and permission changes, and
  deleting, renaming or writing anything outside the working directory.

The guard catches accidents and can be bypassed (``os.open(..., dir_fd=...)``); the
kernel layers are what hold a determined program. Not covered: disk space beyond one
file's limit, and reading what nobody may read (with no network, it can only end up in
the program's own error line). Without root there is no change of user; without
``unshare`` (or user namespaces), no network namespace.

This file is also the child's entry point (``python -I -B execution.py MEM CPU DROP``,
the source on stdin).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import types
from dataclasses import dataclass
from functools import cache
from typing import IO, Any, Literal, NoReturn

Status = Literal["passed", "failed", "timeout", "error"]

_SANDBOX_ID = 65534  # nobody / nogroup
_FILE_LIMIT = 8 * 2**20
_TAIL_BYTES = 4096
_DETAIL_CHARS = 300
_EXIT_NOT_COMPILED = 3
_EXIT_SETUP_FAILED = 4
_DENIED_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
    "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill",
    "socket.__new__", "socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg",
    "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function", "ctypes.cdata",
    "resource.setrlimit", "resource.prlimit", "os.symlink", "os.link",
    "os.chmod", "os.chown", "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr",
})  # fmt: skip
# Audit events that change files: which arguments are paths, and which are dir_fds
# (a path relative to a directory descriptor cannot be checked, so it is refused).
_PATH_EVENTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "os.remove": ((0,), (1,)),
    "os.rmdir": ((0,), (1,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.truncate": ((0,), ()),
    "shutil.rmtree": ((0,), (1,)),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


@dataclass(frozen=True)
class ExecutionResult:
    """How a sandboxed program ended.

    Attributes:
        status: ``"passed"``: it ran to its end (exit code 0). ``"failed"``: it
            raised, exited early (``sys.exit`` counts: it skipped the rest of its
            checks) or hit a memory, CPU or file-size limit. ``"timeout"``: no end
            within the wall-clock limit. ``"error"``: it never ran, because it does
            not compile.
        detail: One line saying why, e.g. ``"AssertionError"`` or
            ``"no result within 10s"``.
    """

    status: Status
    detail: str

    @property
    def passed(self) -> bool:
        """Whether the program ran to its end."""
        return self.status == "passed"


def run_python(source: str, *, timeout_s: float = 10.0, memory_mb: int = 1024) -> ExecutionResult:
    """Run Python source in a separate, confined process; never raises for anything the code does.

    Safe to call from several threads at once.

    Args:
        source: A whole program, run as ``__main__``.
        timeout_s: Wall-clock limit; the CPU limit is one second more, rounded up.
        memory_mb: Address-space limit of the process.

    Raises:
        RuntimeError: The sandbox itself cannot start a program.
    """
    drop = os.geteuid() == 0
    workdir = tempfile.mkdtemp(prefix="moa-exec-")
    try:
        if drop:
            os.chown(workdir, _SANDBOX_ID, _SANDBOX_ID)
        command = [
            *_network_isolation(drop),
            # -B: the child starts as root and must not write bytecode caches anywhere.
            *(sys.executable, "-I", "-B", os.path.abspath(__file__)),
            *(str(memory_mb), str(math.ceil(timeout_s) + 1), "1" if drop else "0"),
        ]
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stderr:
            stdin.write(source.encode("utf-8", "surrogatepass"))
            stdin.seek(0)
            returncode = _spawn_and_wait(command, workdir, stdin, stderr, timeout_s)
            last_line = _last_line(stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if returncode == _EXIT_SETUP_FAILED:
        raise RuntimeError(f"the sandbox cannot confine the program: {last_line}")
    return _result(returncode, last_line, timeout_s, memory_mb)


@cache
def _network_isolation(root: bool) -> tuple[str, ...]:
    """Return the command prefix that runs a program without network, or () if none works."""
    unshare = shutil.which("unshare")
    # A user namespace would map root to itself, and nobody would then be unmapped.
    flags = ("--net",) if root else ("--map-root-user", "--net")
    if unshare is None:
        return ()
    try:
        probe = subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return (unshare, *flags, "--") if probe.returncode == 0 else ()


def _spawn_and_wait(
    command: list[str], workdir: str, stdin: IO[bytes], stderr: IO[bytes], timeout_s: float
) -> int | None:
    """Run the child; return its exit code, or None when it timed out (it is killed)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
    env["TMPDIR"] = workdir  # tempfile's files land where the program may write
    # BLAS libraries start threads on import, which the process limit refuses.
    env |= dict.fromkeys(("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"), "1")
    try:
        process = subprocess.Popen(
            command, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr, cwd=workdir,
            env=env, start_new_session=True,
        )  # fmt: skip
    except OSError as error:
        raise RuntimeError(f"cannot start the sandbox: {error}") from error
    try:
        exited = _wait_exit(process.pid, timeout_s)
    finally:
        # Before reaping: until then the group id cannot belong to another process.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return process.returncode if exited else None


def _wait_exit(pid: int, timeout_s: float) -> bool:
    """Wait until a child exits, without reaping it; return whether it did in time."""
    deadline, pause = time.monotonic() + timeout_s, 0.001
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, 0.02)
    return True


def _last_line(stream: IO[bytes]) -> str:
    """Return the last non-blank line of the end of a stream, shortened."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - _TAIL_BYTES))
    lines = stream.read().decode("utf-8", "replace").splitlines()
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return last[:_DETAIL_CHARS]


def _result(
    returncode: int | None, last_line: str, timeout_s: float, memory_mb: int
) -> ExecutionResult:
    if returncode is None:
        return ExecutionResult("timeout", f"no result within {timeout_s:g}s")
    if returncode == 0:
        return ExecutionResult("passed", "ran to the end")
    if returncode == _EXIT_NOT_COMPILED:
        return ExecutionResult("error", last_line or "does not compile")
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else ""
        why = {"SIGXCPU": "CPU time limit", "SIGXFSZ": "file size limit"}.get(name, "killed")
        return ExecutionResult("failed", f"{why} ({name or -returncode})")
    if last_line.startswith("MemoryError"):
        return ExecutionResult("failed", f"{last_line} (memory limit {memory_mb} MB)")
    return ExecutionResult("failed", last_line or f"exit code {returncode}")


# The child: everything below runs in the sandboxed process.


def _child_main(argv: list[str]) -> int:
    """Confine this process, then run the source read from stdin; return the exit code."""
    source = sys.stdin.buffer.read()
    memory_mb, cpu_s, drop = int(argv[0]), int(argv[1]), argv[2] == "1"
    try:
        _set_limits(memory_mb, cpu_s)
        if drop:
            _drop_privileges()
    except (OSError, ValueError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return _EXIT_SETUP_FAILED
    try:
        # dont_inherit: this file's `from __future__` imports must not apply to the program.
        code = compile(source, "main.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        print("".join(traceback.format_exception_only(error)), end="", file=sys.stderr)
        return _EXIT_NOT_COMPILED
    _install_guard(os.getcwd())
    return _run(code)


def _set_limits(memory_mb: int, cpu_s: int) -> None:
    limits = {
        resource.RLIMIT_AS: (memory_mb * 2**20,) * 2,
        resource.RLIMIT_CPU: (cpu_s, cpu_s + 1),  # SIGXCPU first, SIGKILL a second later
        resource.RLIMIT_FSIZE: (_FILE_LIMIT,) * 2,
        resource.RLIMIT_CORE: (0, 0),
        # Counted per user: one means this process can start no process or thread.
        resource.RLIMIT_NPROC: (1, 1),
    }
    for kind, (soft, hard) in limits.items():
        current = resource.getrlimit(kind)[1]
        if current != resource.RLIM_INFINITY:  # only root may raise a hard limit
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(kind, (soft, hard))


def _drop_privileges() -> None:
    """Become nobody, keeping the import path readable through directory descriptors."""
    kept: list[tuple[str, int]] = []
    for entry in sys.path:
        try:
            kept.append((entry, os.open(entry, os.O_RDONLY | os.O_DIRECTORY)))
        except OSError:
            continue
    os.setgroups([])
    os.setgid(_SANDBOX_ID)
    os.setuid(_SANDBOX_ID)
    moved: dict[str, str] = {}
    for entry, descriptor in kept:
        if os.access(entry, os.R_OK | os.X_OK):
            os.close(descriptor)
        else:  # a process may always open its own descriptors' /proc links
            moved[entry] = f"/proc/self/fd/{descriptor}"
    if moved:
        _reroute_imports(moved)


def _reroute_imports(moved: dict[str, str]) -> None:
    """Point sys.path, and the packages imported so far (encodings), at their new paths."""

    def reroute(path: str) -> str:
        for old, new in moved.items():
            if path == old or path.startswith(old + os.sep):
                return new + path[len(old) :]
        return path

    sys.path[:] = [reroute(entry) for entry in sys.path]
    for module in list(sys.modules.values()):
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [reroute(entry) for entry in search]


def _install_guard(workdir: str) -> None:
    """Refuse, from Python, what the program must not do (see the module docstring)."""
    root = os.path.realpath(workdir)

    def inside(path: Any) -> bool:
        if isinstance(path, int):  # a descriptor the program already holds
            return True
        target = os.path.abspath(os.fsdecode(path))
        return target == root or target.startswith(root + os.sep) or target == os.devnull

    def guard(event: str, args: tuple[Any, ...]) -> None:
        if event in _DENIED_EVENTS:
            raise PermissionError(f"{event} is not allowed in the sandbox")
        if event in _PATH_EVENTS:
            paths, dir_fds = _PATH_EVENTS[event]
            fds_ok = all(args[i] in (None, -1) for i in dir_fds if i < len(args))
            if not fds_ok or not all(inside(args[i]) for i in paths):
                raise PermissionError(f"{event} outside the working directory is not allowed")
        if event == "open" and _opens_for_writing(args) and not inside(args[0]):
            raise PermissionError(f"writing {args[0]!r} is not allowed in the sandbox")

    sys.addaudithook(guard)
    os._exit = _exit_early


def _opens_for_writing(args: tuple[Any, ...]) -> bool:
    mode, flags = args[1], args[2]
    if isinstance(flags, int) and flags >= 0:
        return bool(flags & _WRITE_FLAGS)
    return isinstance(mode, str) and any(letter in mode for letter in "wax+")


def _exit_early(status: int) -> NoReturn:
    # Exit code 0 means "ran to the end", so an exit from within counts as a failure.
    raise SystemExit(status)


def _run(code: types.CodeType) -> int:
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    try:
        exec(code, module.__dict__)
    except SystemExit as exit_:
        print(f"SystemExit: {exit_.code!r} (the program exited before its end)", file=sys.stderr)
        return 1
    except BaseException as error:  # every failure of the program is reported
        skip_this_frame = error.__traceback__.tb_next if error.__traceback__ else None
        traceback.print_exception(type(error), error, skip_this_frame)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
