#!/usr/bin/env bash
# Every GPU check, for a session lent a GPU machine (15 minutes of device time in all, start-up included;
# at most 10 minutes a call). Two calls on one warm machine, the second right after the first:
#
#   CALL_BUDGET_S=560 bash bench/gpu_checks.sh measure maml    # run timeout_s 600
#   CALL_BUDGET_S=200 bash bench/gpu_checks.sh imaml bench     # run timeout_s 240
#
# A training phase trains for what is left of CALL_BUDGET_S (seconds since the script started) less
# TAIL_S (default 100: the last validation, 600 test tasks, packing), at most MAML_MINUTES / IMAML_MINUTES,
# so that each call ends inside its timeout whatever the measurements before it took.
#
# each with carry [".whl", ".device-data"] (README, "GPU results": the higher wheel, which the GPU image
# lacks, and Omniglot packed by bench.omniglot.pack_omniglot, since the image folders are too large to travel).
#
# Phases, in the order given:
#   measure  device.txt; `metagrad throughput` of both engines eagerly (host sampler), of the batched engine
#            with the device sampler eagerly, then captured as a CUDA graph with the device sampler (with
#            the host sampler if that capture fails), every row traced (kernel launches, host syncs, the
#            kernels that take the time). About 3 minutes. Writes flags.env: the graph and sampler flags
#            that worked, which the training phases use.
#   bench    the pytest-benchmark GPU baseline (--bench-device cuda), at most 2 minutes.
#   compile  first-order MAML and MAML through torch.compile (inductor, reduce-overhead) instead of the
#            captured graph, warmup_s holding the compile time; at most 5 minutes. Not in the two calls
#            above: 15 device minutes do not hold it beside the training runs; run it where they are done.
#   maml     the Omniglot 5-way 1-shot MAML preset, batched engine, for its 60,000 iterations (6.4 minutes at
#            the 5,000 tasks/s target) or the time left, validated every 1,000 iterations, then its 600
#            test tasks.
#   imaml    the iMAML-GD preset for the time left (at most IMAML_MINUTES), validated every 250
#            iterations, then its 600 test tasks.
# Every step has its own timeout, so one that hangs or fails leaves the others their time; results are
# packed into $OUT/gpu-results.tar.gz after every step (a timeout keeps what finished), checkpoints left
# out; the log is $OUT/gpu-log-PHASES.txt.
#
# A dry run on the CPU checks the script itself (flags, fallbacks, packing) in a minute or two:
#   OUT=/tmp/gpu-out DEVICE=cpu DATA_ROOT=../shared/data DRY_RUN=1 bash bench/gpu_checks.sh measure maml imaml
set -uo pipefail
DEVICE=${DEVICE:-cuda}
DATA_ROOT=${DATA_ROOT:-.device-data}
MAML_MINUTES=${MAML_MINUTES:-8}
IMAML_MINUTES=${IMAML_MINUTES:-8}
CALL_BUDGET_S=${CALL_BUDGET_S:-560}
TAIL_S=${TAIL_S:-100}
R=${RESULTS:-runs/gpu-results}  # ignored by git, so it stays on the warm machine between the two calls
mkdir -p "$R" "$OUT"
R=$(cd "$R" && pwd)
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
fi
export METAGRAD_CACHE=/tmp/metagrad-cache PYTHONUNBUFFERED=1
exec > >(tee "$OUT/gpu-log-$(IFS=-; echo "$*").txt") 2>&1
pack() { tar -czf "$OUT/gpu-results.tar.gz" --exclude=checkpoint.pt -C "$R" .; }
MG=(python3 -m bench.cli)  # metagrad, from this checkout
COMMON=(--device "$DEVICE" --data-root "$DATA_ROOT" --no-progress)
# DRY_RUN: tiny networks and runs, so that the CPU goes through every step quickly
if [ -n "${DRY_RUN:-}" ]; then
  SMALL=(--filters 4 --meta-batch 4) ITERATIONS=1 TRAIN=(--filters 4 --meta-batch 4 --validation-tasks 8)
  EVAL_TASKS=20 MAML_MINUTES=0.05 IMAML_MINUTES=0.05 BENCH=(-k "device_sampler and omniglot-5w1s")
else
  SMALL=() ITERATIONS=20 TRAIN=() EVAL_TASKS=600 BENCH=()
fi

measure() {
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0],
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
  } > "$R/device.txt" 2>&1
  cat "$R/device.txt"
  # the per-task engine runs one task at a time (about 2 s an iteration): one timed iteration says enough
  timeout 100 "${MG[@]}" throughput --out "$R/throughput-per-task" --engines per-task --iterations 1 --trace \
    "${SMALL[@]}" "${COMMON[@]}"
  pack
  timeout 60 "${MG[@]}" throughput --out "$R/throughput-eager" --engines batched --iterations "$ITERATIONS" \
    --trace "${SMALL[@]}" "${COMMON[@]}"
  pack
  timeout 60 "${MG[@]}" throughput --out "$R/throughput-eager-device-sampler" --engines batched --sampler device \
    --iterations "$ITERATIONS" --trace "${SMALL[@]}" "${COMMON[@]}"
  pack
  FLAGS="--cuda-graph --sampler device"
  if ! timeout 90 "${MG[@]}" throughput --out "$R/throughput-graph" --engines batched --cuda-graph --sampler device \
      --iterations "$ITERATIONS" --trace "${SMALL[@]}" "${COMMON[@]}"; then
    echo "CUDA graph with the device sampler failed: trying the host sampler"
    FLAGS="--cuda-graph --sampler host"
    timeout 90 "${MG[@]}" throughput --out "$R/throughput-graph-host-sampler" --engines batched --cuda-graph \
      --sampler host --iterations "$ITERATIONS" --trace "${SMALL[@]}" "${COMMON[@]}" \
      || { echo "CUDA graph capture failed: training runs eagerly"; FLAGS="--sampler device"; }
  fi
  echo "FLAGS=\"$FLAGS\"" > "$R/flags.env"
  pack
}

compiled() {  # torch.compile (inductor, reduce-overhead) against the captured graph, for the two cheapest to compile
  timeout 300 "${MG[@]}" throughput --out "$R/throughput-compiled" --engines batched --compile --sampler device \
    --presets omniglot-5w1s-fomaml,omniglot-5w1s-maml --iterations "$ITERATIONS" --trace "${SMALL[@]}" "${COMMON[@]}"
  pack
}

benchmarks() {  # the pytest-benchmark GPU baseline
  timeout 120 python3 -m pytest tests/benchmarks --benchmark-only --bench-device "$DEVICE" -p no:cacheprovider \
    --benchmark-storage="file://$R/benchmarks" --benchmark-save="gpu-$DEVICE" "${BENCH[@]}" -q
  pack
}

train_and_evaluate() {  # VARIANT MAX_MINUTES VALIDATE_EVERY
  local variant=$1 run="$R/train-omniglot-5w1s-$1-batched" minutes
  minutes=$(python3 -c "print(round(min($2, ($CALL_BUDGET_S - $SECONDS - $TAIL_S) / 60), 2))")
  if python3 -c "import sys; sys.exit(0 if $minutes > 0 else 1)"; then :; else
    echo "no time left in CALL_BUDGET_S=$CALL_BUDGET_S for $variant (${SECONDS}s used)"; return
  fi
  echo "training $variant for at most $minutes minutes (${SECONDS}s into the call)"
  FLAGS="--sampler device"
  [ -f "$R/flags.env" ] && . "$R/flags.env"
  [ "$DEVICE" = cuda ] || FLAGS="--sampler device"  # graphs are CUDA's
  # shellcheck disable=SC2086  # FLAGS is a list of flags
  timeout "$(python3 -c "print(int($minutes * 60 + 120))")" "${MG[@]}" train --preset "omniglot-5w1s-$variant" \
    --out "$run" --engine batched $FLAGS --max-minutes "$minutes" --validate-every "$3" --checkpoint-every 5000 \
    "${TRAIN[@]}" "${COMMON[@]}"
  timeout 120 "${MG[@]}" eval "$run" --engine batched --device "$DEVICE" --tasks "$EVAL_TASKS" --no-progress
  pack
}

for phase in "$@"; do
  case "$phase" in
    measure) measure ;;
    bench) benchmarks ;;
    compile) compiled ;;
    maml) train_and_evaluate maml "$MAML_MINUTES" 1000 ;;
    imaml) train_and_evaluate imaml-gd "$IMAML_MINUTES" 250 ;;
    *) echo "unknown phase $phase (measure, bench, compile, maml, imaml)"; exit 2 ;;
  esac
done
ls -R "$R" | head -60
