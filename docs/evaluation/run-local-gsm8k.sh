#!/usr/bin/env bash
# The local GSM8K measurement of docs/evaluation.md. Resumable: rerun to continue.
# N items of the tuning part (offset 0 of the seed-0 order); the held-out part is
# offset 100 of the same order (run it with OFFSET=100).
set -euo pipefail
N=${N:-5}
OFFSET=${OFFSET:-0}
OUT=${OUT:-eval-results/local-gsm8k-offset$OFFSET}
nice -n 10 moa eval run gsm8k -c docs/evaluation/single-qwen1.5b.yaml \
  --out "$OUT" --limit "$N" --offset "$OFFSET" --seed 0 -j 1 --no-progress
nice -n 10 moa eval experiment aggregation gsm8k -p local \
  --out "$OUT" --limit "$N" --offset "$OFFSET" --seed 0 -j 1 --no-progress
moa eval report "$OUT/gsm8k"
