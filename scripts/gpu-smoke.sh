#!/usr/bin/env bash
# The smoke proof on a GPU machine: record smoke baselines, then judge a second run against them.
# Usage: bash scripts/gpu-smoke.sh OUTDIR [extra pytest args]
# Where NeMo is not installed (a bare PyTorch image), wheels in .whl/ are installed to /tmp/site first
# (fetch them with ../shared/device/fetch-wheels.sh .whl).
set -uo pipefail
out=${1:?usage: gpu-smoke.sh OUTDIR}; shift
mkdir -p "$out"
# shellcheck source=scripts/device-env.sh
source scripts/device-env.sh || exit 1
nvidia-smi -L
common=("${PLUGIN[@]}" -p no:cacheprovider tests/acceptance -m smoke -rA --data-cache /tmp/qa-cache "$@")
python3 -m pytest "${common[@]}" --baseline-update --runs-dir /tmp/qa-runs/update 2>&1 | tee "$out/pytest-update.log"
python3 -m pytest "${common[@]}" --runs-dir /tmp/qa-runs/judge --benchmark-json "$out/bench.json" 2>&1 \
  | tee "$out/pytest-judge.log"
rc=$?
cp baselines.yaml "$out/"
for log in /tmp/qa-runs/*/*/*/train.log; do
  [ -f "$log" ] || continue
  phase=$(basename "$(dirname "$(dirname "$(dirname "$log")")")")
  model=$(basename "$(dirname "$(dirname "$log")")")
  cp "$log" "$out/$model-$phase.log"
done
exit $rc
