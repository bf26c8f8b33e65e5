#!/usr/bin/env bash
# The first-step NaN experiment on one GPU (BENCHMARKS.md, "The first-step NaN: a stream race in DDP construction").
# 1. the stand-alone reproduction (benchmarks/ddp_stream_race_repro.py), as NeMo does it and fixed;
# 2. the 1-layer full-width qwen3_8b command through benchmarks/ddp_init_race.py, RUNS times per --order given,
#    interleaved, PARALLEL at a time on the one GPU; one log per run in OUT/runs/ORDER-N.log, a line per run in
#    OUT/results.tsv (order, run, changed parameters at the first forward, first loss, last step, verdict).
# Usage: bash benchmarks/ddp_race_device.sh OUT "none both after before" RUNS [PARALLEL] [STEPS]
set -uo pipefail
out=${1:?usage: ddp_race_device.sh OUT ORDERS RUNS [PARALLEL] [STEPS]}
orders=${2:?orders}
runs=${3:?runs}
parallel=${4:-4}
steps=${5:-5}
mkdir -p "$out/runs"
# shellcheck source=scripts/device-env.sh
source scripts/device-env.sh || exit 1
export PYTHONPATH=${PYTHONPATH:-}:$PWD/src
nvidia-smi -L
data=/tmp/qa-race/data
python3 -m qwen_acceptance.cli preprocess --input bundled:python-reference --tokenizer-type bundled:qwen3 \
  --output-prefix "$data/ref" --no-progress > "$out/preprocess.log" 2>&1 || { cat "$out/preprocess.log"; exit 1; }
tok=$(python3 -c 'from qwen_acceptance.data.sources import bundled_qwen3_dir; print(bundled_qwen3_dir())')

for mode in "" --fixed; do  # REPRO=0 skips the stand-alone reproduction
  [ "${REPRO:-1}" = 0 ] && break
  timeout 120 python3 -m torch.distributed.run --standalone --nproc-per-node 1 benchmarks/ddp_stream_race_repro.py \
    $mode --trials 3 > "$out/repro${mode:+-fixed}.log" 2>&1
  echo "repro ${mode:-as-nemo}: rc $?"; grep -E "^(trial|torch)" "$out/repro${mode:+-fixed}.log"
done

one() {  # ORDER N: one training run
  local order=$1 n=$2 log="$out/runs/$1-$2.log"
  timeout 300 python3 -m torch.distributed.run --standalone --nproc-per-node 1 benchmarks/ddp_init_race.py \
    --order "$order" -- qwen3_8b --data-prefix "$data/ref_text_document" --tokenizer-dir "$tok" \
    --run-dir "/tmp/qa-race/runs/$order-$n" --gpus 1 --probe --layout tp=1 --max-steps "$steps" \
    --warmup-steps 1 --global-batch-size 8 --override model.config.num_layers=1 --override trainer.limit_val_batches=0 \
    --override "trainer.val_check_interval=$steps" > "$log" 2>&1
  local rc=$? changed first last verdict
  changed=$(grep -oE "changed=[0-9]+/[0-9]+" "$log" | head -1)
  first=$(grep -oE "global_step: 0 \| reduced_train_loss: [^ |]+" "$log" | head -1 | awk '{print $NF}')
  last=$(grep -oE "global_step: [0-9]+" "$log" | tail -1 | awk '{print $2}')
  if grep -qiE "found (nan|inf)|NaN or Inf|non-finite" "$log"; then verdict=nonfinite
  elif [ "$rc" = 0 ]; then verdict=ok; else verdict="rc$rc"; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$order" "$n" "${changed:-?}" "${first:--}" "${last:--}" "$verdict" \
    | tee -a "$out/results.tsv"
}
export -f one
export out data tok steps
# shellcheck disable=SC2016  # $0 and $1 are expanded by the inner bash
for n in $(seq 1 "$runs"); do for order in $orders; do echo "$order $n"; done; done \
  | xargs -P "$parallel" -L 1 bash -c 'one "$0" "$1"'
echo "order run changed first_loss last_step verdict"
sort "$out/results.tsv"
tar czf "$out/runs.tgz" -C "$out" runs && rm -rf "$out/runs"  # one file: the device returns a limited count
