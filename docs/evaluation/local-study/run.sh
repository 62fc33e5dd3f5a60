#!/usr/bin/env bash
# The local aggregation study of docs/evaluation.md. Every configuration runs on the
# same seeded, disjoint parts of each benchmark (tuning, then held-out), and all of a
# part's configurations share one call cache (calls.sqlite beside their results), so a
# strategy reuses the proposals another configuration already paid for. Resumable: run
# it again to continue where it stopped. Usage: run.sh [tuning|held-out] [CONFIG...];
# BENCHMARKS="ifeval humaneval gsm8k" (the default) picks and orders the benchmarks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-eval-results/local-study}
parts=${1:-tuning held-out}
shift || true
names=("$@")
# The first config pays for the three proposals; single and the strategies reuse them.
[ ${#names[@]} -gt 0 ] ||
  names=(vote-3 single consensus-3 auto-3 auto-3-ea auto-3-ee synthesize-3 rank-3 auto-5 auto-3x2)
configs=()
for name in "${names[@]}"; do configs+=(-c "$here/$name.yaml"); done
# benchmark: tuning offset, held-out offset, items per part (seed-0 order of moa eval)
declare -A parts_of=([gsm8k]=0:100:100 [ifeval]=0:100:100 [humaneval]=0:82:82)
for dataset in ${BENCHMARKS:-ifeval humaneval gsm8k}; do
  IFS=: read -r tuning held n <<<"${parts_of[$dataset]}"
  for part in $parts; do
    offset=$tuning; [ "$part" = held-out ] && offset=$held
    nice -n 10 moa eval run "$dataset" "${configs[@]}" --out "$OUT/$part" \
      --offset "$offset" --limit "$n" --seed 0 -j 2 --no-progress
  done
done
