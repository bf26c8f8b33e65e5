#!/usr/bin/env bash
# Long full-width slices on one GPU (BENCHMARKS.md, "Long full-width slices after the fix"): qwen3_8b's and
# qwen25_7b's width at seq 8192 and qwen3_30b_a3b's (MoE) at seq 4096, STEPS steps each, side by side on the one
# GPU, through the suite's own `bench` path, on a corpus of real text made on the machine (CPython's standard
# library sources, about 20 MB: big enough that 300 steps do not repeat it many times). Logs in OUT/.
# MODELS="qwen3_8b" picks the slices (default all three; a 16-layer dense slice needs the GPU to itself).
# Usage: [MODELS=...] bash benchmarks/long_slices_device.sh OUT [STEPS] [LAYERS] [GLOBAL_BATCH]
set -uo pipefail
out=${1:?usage: long_slices_device.sh OUT [STEPS] [LAYERS] [GLOBAL_BATCH]}
steps=${2:-300}; layers=${3:-4}; gb=${4:-2}
mkdir -p "$out"
# shellcheck source=scripts/device-env.sh
source scripts/device-env.sh || exit 1
export PYTHONPATH=${PYTHONPATH:-}:$PWD/src
corpus=/tmp/qa-long/stdlib.jsonl
mkdir -p /tmp/qa-long
python3 - "$corpus" <<'PY'
import json, pathlib, sys, sysconfig
out, total = open(sys.argv[1], "w"), 0
for path in sorted(pathlib.Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
    if total > 20_000_000 or "test" in path.parts:
        continue
    text = path.read_text(errors="replace")
    total += len(text)
    out.write(json.dumps({"text": text}) + "\n")
print(f"corpus: {total} characters")
PY
bench() {  # MODEL LAYOUT EXTRA...
  local model=$1 layout=$2; shift 2
  python3 -m qwen_acceptance.cli bench "$model" --gpus 1 --layout "$layout" --steps "$steps" \
    --global-batch-size "$gb" --override "model.config.num_layers=$layers" --corpus "$corpus" \
    --tokenizer bundled:qwen3 --runs-dir /tmp/qa-long/runs --data-cache /tmp/qa-long/cache --json "$@" \
    > "$out/$model.json" 2> "$out/$model.stderr"
  echo "$model: rc $?"
}
# Side by side; the first to start preprocesses the corpus into the shared data cache, the others wait for it.
for model in ${MODELS:-qwen3_8b qwen25_7b qwen3_30b_a3b}; do
  case $model in
    qwen3_30b_a3b) bench "$model" tp=1,pp=1,ep=1,sp=false & ;;
    *) bench "$model" tp=1 & ;;
  esac
done
wait
for log in /tmp/qa-long/runs/*/*/train.log; do
  cp "$log" "$out/$(basename "$(dirname "$(dirname "$log")")").log"
done
ls -la "$out"
