#!/usr/bin/env bash
# The fault matrix on a GPU machine (README, "What the suite catches"): every variant of faults.yaml for both smoke
# models, judged against baselines.yaml, into OUT/MODEL/ (table.md, table.json, logs/; all of it also packed as
# OUT/MODEL.tgz). Variants that need more GPUs than the machine has become rows that say so. Extra arguments go to
# every `qwen-acceptance sensitivity` (e.g. --faults lr_x3 rerun, --lr-scale 1.5, or --jobs 4: four variants at
# once on one H200, for the loss checks;
# the honest variants' throughput wants --jobs 1; --bisect-lr 3 --jobs 4: the learning-rate detection power).
# MODELS="smoke_qwen3" picks the models (default both: one model's matrix fits a 10-minute command with --jobs 4).
# Usage: [MODELS=...] bash benchmarks/sensitivity_device.sh OUT [extra sensitivity arguments]
set -uo pipefail
out=${1:?usage: sensitivity_device.sh OUT [extra sensitivity arguments]}; shift
mkdir -p "$out"
# shellcheck source=scripts/device-env.sh
source scripts/device-env.sh || exit 1
export PYTHONPATH=${PYTHONPATH:-}:$PWD/src
nvidia-smi -L
for model in ${MODELS:-smoke_qwen3 smoke_qwen3_moe}; do
  python3 -m qwen_acceptance.cli sensitivity "$model" --out "$out/$model" --runs-dir /tmp/qa-sens/runs \
    --data-cache /tmp/qa-sens/cache "$@" 2>&1 | tee "$out/$model.stdout" | grep -E '^\[sensitivity\]|^\|'
  # The device tool returns no folder deeper than two levels: the logs (and a bisection's rounds) travel packed.
  tar czf "$out/$model.tgz" -C "$out" "$model"
done
