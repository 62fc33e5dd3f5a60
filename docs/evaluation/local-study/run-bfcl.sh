#!/usr/bin/env bash
# The local tool-calling study of docs/evaluation.md, on BFCL. Parts fixed before looking:
# items 0-(N-1) of the seed-0 order of each subset are the tuning part, N-(2N-1) the
# held-out part (N=20). Every subset's tuning part runs before any held-out part. All
# configurations of a part share one call cache (calls.sqlite beside their results), so
# the strategies reuse the proposals another configuration already paid for. Resumable:
# run it again to continue. Usage: run-bfcl.sh [tuning|held-out] [CONFIG...];
# SUBSETS="simple_python multiple parallel irrelevance" (the default) picks the subsets;
# MOA="python -m moa_graph.cli" runs a checkout's code instead of the installed `moa`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-eval-results/local-study}
N=${N:-20}
read -r -a moa <<<"${MOA:-moa}"
parts=${1:-tuning held-out}
shift || true
names=("$@")
# single first: its greedy call is the mixtures' greedy proposer (seed 0), paid once.
[ ${#names[@]} -gt 0 ] || names=(single local synthesize-3)
configs=()
# Pair with the 1.5B alone when it is among the configurations run.
if [[ " ${names[*]} " == *" single "* ]]; then configs+=(--baseline single); fi
for name in "${names[@]}"; do
  file="$here/bfcl/$name.yaml"  # the study's own configs, else the local study's
  if [ ! -f "$file" ]; then file="$here/$name.yaml"; fi
  configs+=(-c "$file")
done
for part in $parts; do
  offset=0; [ "$part" = held-out ] && offset=$N
  for subset in ${SUBSETS:-simple_python multiple parallel irrelevance}; do
    nice -n 10 "${moa[@]}" eval run "bfcl:$subset" "${configs[@]}" --out "$OUT/$part" \
      --offset "$offset" --limit "$N" --seed 0 -j 2 --no-progress
  done
done
