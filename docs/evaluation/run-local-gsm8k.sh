#!/usr/bin/env bash
# The earlier, smaller local GSM8K run of docs/evaluation.md (the 29-item row): the 1.5B
# alone and three samples of it with majority vote, on N items of the tuning part.
# The 100 + 100 study is docs/evaluation/local-gsm8k/run.sh.
set -euo pipefail
N=${N:-5}
OFFSET=${OFFSET:-0}
OUT=${OUT:-eval-results/local-gsm8k-offset$OFFSET}
common=(--out "$OUT" --limit "$N" --offset "$OFFSET" --seed 0 -j 1 --no-progress)
nice -n 10 moa eval run gsm8k -c docs/evaluation/single-qwen1.5b.yaml "${common[@]}"
nice -n 10 moa eval run gsm8k -c docs/evaluation/local-vote.yaml "${common[@]}"
# The remaining aggregation strategies on the `local` preset (synthesize, rank, vote-hint, vote):
if [[ ${ALL:-0} == 1 ]]; then
  nice -n 10 moa eval experiment aggregation gsm8k -p local "${common[@]}"
fi
moa eval report "$OUT/gsm8k"
