"""A pytest plugin that runs each selected test N times in a row: ``-p tests.repeat --repeat N``.

Used by ``.ci/repeat.sh`` to catch a test that fails once in many runs; each
repetition is a test of its own (``test_x[0]`` ... ``test_x[N-1]``) with its own
fixtures, so a failure names the repetition it happened in.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--repeat", type=int, default=1, help="run each test this many times")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    times = metafunc.config.getoption("repeat")
    if times > 1:
        metafunc.fixturenames.append("_repetition")
        metafunc.parametrize("_repetition", range(times))
