#!/usr/bin/env bash
# CI: the checkpoint and resume tests, 20 times in a row in one process, so a failure
# that comes once in many runs (a locked SQLite file on resume) fails CI. The tests that
# run the CLI in subprocesses are left to the main suite: they take most of the time
# and exercise the same stores.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pytest --count "${MOA_REPEAT:-20}" -q -x -k "not cli" \
    tests/test_durable.py tests/test_early_exit.py \
    tests/test_checkpoint_stores.py::test_a_write_under_way_when_the_checkpointer_closes_leaves_the_file_unlocked
