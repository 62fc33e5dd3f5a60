"""The program the sandbox's interpreter starts: it runs one program and reports how it went.

This file runs inside CPython on WASI (see :mod:`moa_graph.sandbox.execute`), never in the
host process. Its arguments are the program's source and then each example's source,
as hexadecimal UTF-8 (no NUL can cut an argument short). It runs the program as
``__main__`` with its prints discarded, then each example as doctest does (compiled in
``single`` mode, in a copy of the program's globals), keeping what the example printed,
or null when it raised. Its last line on stdout is the report, JSON ``{"status": ...,
"detail": ..., "outputs": [...]}``. The host checks the report's shape and compares the
outputs with the expected ones itself: the program decides nothing but what its own
code prints.

Only modules built into the interpreter are imported: ``json``, ``re`` or ``traceback``
would double the time a check takes.
"""

import io
import sys
import types

_OUTPUT_CHARS = 2000  # one example's output; one character more marks it as too long
_DETAIL_CHARS = 300


class _Discard(io.TextIOBase):
    """A text stream that drops what is written to it."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


class _Capture(io.StringIO):
    """Keeps what an example prints, up to one character more than an output may have."""

    def write(self, text: str) -> int:
        room = _OUTPUT_CHARS + 1 - self.tell()
        if room > 0:
            super().write(text[:room])
        return len(text)


_DISCARD = _Discard()


def _exception_line(error: BaseException) -> str:
    """Return the last line of the error's traceback, as ``traceback`` would print it."""
    kind = type(error)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    try:
        message = str(error.msg if isinstance(error, SyntaxError) else error)
    except Exception:  # a program's exception whose str() itself fails
        message = "<exception str() failed>"
    return (f"{name}: {message}" if message else name)[:_DETAIL_CHARS]


def _json_string(text: str) -> str:
    """Return text as a JSON string of ASCII characters."""
    parts = ['"']
    for char in text:
        code = ord(char)
        if 0x20 <= code < 0x7F and char not in '"\\':
            parts.append(char)
        elif code < 0x10000:
            parts.append(f"\\u{code:04x}")
        else:  # a surrogate pair
            code -= 0x10000
            parts.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
    parts.append('"')
    return "".join(parts)


def _example_output(source: str, namespace: dict[str, object]) -> str | None:
    printed = _Capture()
    sys.stdout, sys.displayhook = printed, sys.__displayhook__
    try:
        exec(compile(source, "<example>", "single", dont_inherit=True), dict(namespace))
    except BaseException:
        return None
    finally:
        sys.stdout = _DISCARD
    text = printed.getvalue()
    if text and not text.endswith("\n"):
        text += "\n"  # as doctest's own capture does
    return text


def _run(source: str, examples: list[str]) -> tuple[str, str, list[str | None]]:
    try:
        code = compile(source, "main.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        return "error", _exception_line(error), []
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    try:
        exec(code, module.__dict__)
    except SystemExit as exit_:
        detail = f"SystemExit: {exit_.code!r} (the program exited before its end)"
        return "failed", detail[:_DETAIL_CHARS], []
    except BaseException as error:  # every failure of the program is reported
        return "failed", _exception_line(error), []
    outputs = [_example_output(example, module.__dict__) for example in examples]
    return "passed", "ran to the end", outputs


def main() -> None:
    """Run the program and examples of the arguments; write the report as stdout's last line."""
    report_to = sys.stdout
    source, *examples = (bytes.fromhex(a).decode("utf-8", "surrogatepass") for a in sys.argv[1:])
    del sys.argv[1:]
    sys.stdout = sys.stderr = _DISCARD
    status, detail, outputs = _run(source, examples)
    listed = ", ".join("null" if out is None else _json_string(out) for out in outputs)
    report = f'{{"status": "{status}", "detail": {_json_string(detail)}, "outputs": [{listed}]}}'
    report_to.write(f"\n{report}\n")
    report_to.flush()


if __name__ == "__main__":
    main()
