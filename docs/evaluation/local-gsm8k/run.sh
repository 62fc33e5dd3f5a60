#!/usr/bin/env bash
# The local GSM8K study of docs/evaluation.md: the tuning part (items 0-99 of the
# seed-0 order), then the held-out part (items 100-199), each one command whose
# configurations share their repeatable calls. Resumable: rerun to continue.
set -euo pipefail
here=$(dirname "$0")
N=${N:-100}
OUT=${OUT:-eval-results/local-gsm8k}
configs=(-c "$here/anchored-vote-3.yaml" -c "$here/single-qwen1.5b.yaml" "$@")
for part in tuning:0 held-out:100; do
  nice -n 10 moa eval run gsm8k "${configs[@]}" --out "$OUT/${part%%:*}" \
    --offset "${part##*:}" --limit "$N" --seed 0 -j 2 --no-progress
done
