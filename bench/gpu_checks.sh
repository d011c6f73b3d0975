#!/usr/bin/env bash
# Every GPU check, for a session lent a GPU machine (15 minutes of device time in all, start-up included;
# at most 10 minutes a call). Two calls on one warm machine, the second right after the first, with the
# budget the first left (status's budget_left_s less about 30 s). The paper's MAML run took these (done on
# 2026-11-28: reports/gpu-h200-paper/):
#
#   CALL_BUDGET_S=570 bash bench/gpu_checks.sh tests paper       # run timeout_s 600
#   CALL_BUDGET_S=LEFT bash bench/gpu_checks.sh paper imaml imaml-minres   # run timeout_s LEFT + 20, at once
#
# and the next session's (README, "GPU results"):
#
#   CALL_BUDGET_S=570 bash bench/gpu_checks.sh measure imaml              # run timeout_s 600
#   CALL_BUDGET_S=LEFT bash bench/gpu_checks.sh imaml-minres bench        # run timeout_s LEFT + 20, at once
#
# then, session after session, with runs/gpu-results carried (the last call's tarball unpacked there), until
# the iMAML-GD runs reach the preset's 60,000 iterations. runs/ is not committed and a session's checkout can
# be new (2026-11-29's was: the 380-iteration checkpoint of 2026-11-28 was gone), so a run to be continued
# has its checkpoint committed with its results (git add -f, about 1.4 MB) and copied back into
# runs/gpu-results before the next GPU call:
#
#   CALL_BUDGET_S=570 bash bench/gpu_checks.sh tests imaml imaml-minres   # run timeout_s 600
#
# each with carry [".whl", ".device-data"] (README, "GPU results": the higher wheel, which the GPU image
# lacks, and Omniglot packed by bench.data.omniglot.pack_omniglot, since the image folders are too large to travel).
# Where the second call finds a fresh machine (the first one's results gone), unpack the first call's
# gpu-results.tar.gz into runs/gpu-results here and add "runs/gpu-results" to carry: the runs resume from
# their checkpoints, which the tarball holds.
# Every step is sized by what is left of CALL_BUDGET_S (seconds since the script started): a training
# phase trains for that less TAIL_S (default 75: the last validation, 600 test tasks, packing), at most
# MAML_MINUTES (3, the issue's "at most 3 GPU minutes") / IMAML_MINUTES; a step with under 20 s is skipped.
#
# Phases, in the order given:
#   measure  device.txt; tests/test_cuda.py (the captured iteration trains the eager run, float64; the GPU
#            draws the CPU's tasks); `metagrad throughput` of the per-task engine (meta-batch 8: it runs
#            one task at a time, so its tasks/s does not depend on the batch), of the batched engine eagerly
#            (host sampler; its meta-gradients compared with the per-task ones on 8 tasks, float64 and
#            float32), then captured as a CUDA graph with the device sampler (with the host sampler if that
#            capture fails), every row traced (kernel launches, host syncs, the kernels that take the time).
#            Then four presets that run on the stacked network (MAML, first-order MAML, Reptile, iMAML-GD;
#            iMAML-HF, on it too since, is left out for time)
#            again with --channels-last, measured the same way, each checked against the per-task engine on
#            4 tasks in float64 (throughput-channels-last). About 5 minutes. Writes flags.env: the capture the training
#            phases use, with --channels-last where it made iMAML-GD at least 3% faster and the same to 1e-10;
#            a preset trains with the graph only where its captured-iteration test passed too (TRAIN_FLAGS
#            overrides flags.env).
#   tests    device.txt and tests/test_cuda.py, for a call on a machine that has not run measure (flags.env:
#            the graph, for the presets whose captured-iteration test passes).
#   paper    the Omniglot 5-way 1-shot MAML preset at its full PAPER_ITERATIONS (60,000), over as many calls
#            as it takes: the first call trains MAML_MINUTES, copies the run as it stands
#            (train-omniglot-5w1s-maml-first-3-minutes, the issue's "at most 3 GPU minutes") and evaluates
#            the copy on 600 test tasks; then, in this call and the next, the run resumes from its checkpoint
#            for what each call has left less RESUME_RESERVE_S (45: the evaluation and packing), until
#            the last iteration, and is evaluated too (in the next call, if this one has no time left).
#            Validated every PAPER_VALIDATE_EVERY (2,000) iterations, 100 tasks each. At 3,526 tasks/s
#            (the H200's captured MAML) 60,000 iterations are 9 minutes of training: with the tests, the
#            copy's evaluation, start-ups and validations, about 12 of the session's 15 minutes.
#   maml     the MAML preset for MAML_MINUTES of training alone, validated every 500 iterations (the
#            preset's), then its 600 test tasks.
#   imaml    the iMAML-GD preset for the time left (at most IMAML_MINUTES), validated every 250
#            iterations, then its 600 test tasks. A run already in $R (carried as runs/gpu-results from an
#            earlier session) resumes from its checkpoint instead, toward the preset's 60,000 iterations.
#   imaml-minres  the same with MINRES for the meta-gradient (preset omniglot-5w1s-imaml-gd-minres): on the
#            CPU, over seven seeds, it beat the paper's CG by 7, 1.1, 22, 3.1 and 4.5 points, tied once and
#            lost by 1.5 (reports/cpu-training/); where both are given, imaml first, they share the time left.
#   bench    the pytest-benchmark GPU baseline of the device-dependent benchmarks (--bench-device cuda).
#   compile  first-order MAML and MAML through torch.compile (inductor, reduce-overhead) instead of the
#            captured graph, warmup_s holding the compile time; up to 5 minutes, in neither call above.
# Every step has its own timeout, so one that hangs or fails leaves the others their time (a training run
# stopped by its timeout saves a checkpoint first); results are packed into $OUT/gpu-results.tar.gz after
# every step (a timeout keeps what finished); the log is $OUT/gpu-log-PHASES.txt.
#
# A dry run on the CPU checks the script itself (flags, fallbacks, packing, resuming) in a few minutes, its
# results under $OUT/dry-run-results (RESULTS overrides), never in runs/gpu-results:
#   OUT=/tmp/gpu-out DEVICE=cpu DATA_ROOT=.device-data DRY_RUN=1 CALL_BUDGET_S=100000 \
#     bash bench/gpu_checks.sh measure paper maml imaml imaml-minres bench
set -uo pipefail
DEVICE=${DEVICE:-cuda}
DATA_ROOT=${DATA_ROOT:-.device-data}
CALL_BUDGET_S=${CALL_BUDGET_S:-570}
TAIL_S=${TAIL_S:-75}
# DRY_RUN: tiny networks and runs, so that the CPU goes through every step quickly (the sizes below are
# defaults: the environment's values win)
if [ -n "${DRY_RUN:-}" ]; then
  SMALL=(--filters 4 --meta-batch 4) ITERATIONS=1 EAGER_ITERATIONS=1 TRAIN=(--filters 4 --meta-batch 4 --validation-tasks 8)
  EVAL_TASKS=20 BENCH=(-k "device_sampler and omniglot-5w1s")
  : "${MAML_MINUTES:=0.05}" "${IMAML_MINUTES:=0.05}" "${PAPER_ITERATIONS:=60}" "${PAPER_VALIDATE_EVERY:=20}"
else
  SMALL=() ITERATIONS=20 EAGER_ITERATIONS=3 TRAIN=() EVAL_TASKS=600 BENCH=(-k "tasks_per_second or device_sampler")
fi
MAML_MINUTES=${MAML_MINUTES:-3}
IMAML_MINUTES=${IMAML_MINUTES:-8}
PAPER_ITERATIONS=${PAPER_ITERATIONS:-60000}  # the preset's
PAPER_VALIDATE_EVERY=${PAPER_VALIDATE_EVERY:-2000}  # 30 validations of 100 tasks over 60,000 iterations
RESUME_RESERVE_S=${RESUME_RESERVE_S:-45}
# ignored by git, so it stays on the warm machine between the two calls. A dry run never writes there: that
# folder holds the GPU runs' checkpoints that the next session carries back (a dry run once overwrote them).
if [ -n "${DRY_RUN:-}" ]; then R=${RESULTS:-$OUT/dry-run-results}; else R=${RESULTS:-runs/gpu-results}; fi
mkdir -p "$R" "$OUT"
R=$(cd "$R" && pwd)
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
fi
export METAGRAD_CACHE=/tmp/metagrad-cache PYTHONUNBUFFERED=1
exec > >(tee "$OUT/gpu-log-$(IFS=-; echo "$*").txt") 2>&1
# checkpoints included (about 1.4 MB each): a run carried back to a fresh machine resumes from them
pack() { tar -czf "$OUT/gpu-results.tar.gz" -C "$R" .; }
MG=(python3 -m metagrad)  # metagrad, from this checkout
COMMON=(--device "$DEVICE" --data-root "$DATA_ROOT" --no-progress)

# Run a step under its timeout: at most CAP seconds, and no more than what is left of the call less RESERVE
# (default TAIL_S; the steps of the tail itself keep 10 s for packing); under 20 s it is skipped.
step() {  # CAP NAME COMMAND...
  local limit
  limit=$(python3 -c "print(max(0, int(min($1, $CALL_BUDGET_S - $SECONDS - ${RESERVE:-$TAIL_S}))))"); shift
  local name=$1; shift
  if [ "$limit" -lt 20 ]; then echo "skipped $name: ${SECONDS}s of $CALL_BUDGET_S used"; return 124; fi
  echo "== $name (at most ${limit}s, ${SECONDS}s into the call)"
  timeout "$limit" "$@"
}

graph_tested() {  # VARIANT: tests/test_cuda.py's captured-iteration test of VARIANT passed in this call or before
  python3 - "$R/test-cuda.xml" "$1" <<'PY'
import sys
import xml.etree.ElementTree as ElementTree
path, variant = sys.argv[1:]
try:
    cases = ElementTree.parse(path).iter("testcase")
except (OSError, ElementTree.ParseError):
    sys.exit(1)
name = f"test_the_captured_iteration_is_the_eager_iteration[{variant}]"
passed = [not list(case) for case in cases if case.get("name") == name]
sys.exit(0 if passed == [True] else 1)
PY
}

cuda_tests() {  # tests/test_cuda.py; fails where a test fails
  local status=0
  step 150 "CUDA tests" env METAGRAD_DATA="$DATA_ROOT" python3 -m pytest tests/test_cuda.py -p no:cacheprovider -q \
    -rs --junitxml="$R/test-cuda.xml" || status=1
  pack
  return $status
}

describe_device() {  # device.txt: the GPU, its driver, torch
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0],
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
  } > "$R/device.txt" 2>&1
  cat "$R/device.txt"
}

measure() {
  describe_device
  local tests_passed=1
  cuda_tests || tests_passed=0
  step 100 "per-task engine" "${MG[@]}" throughput --out "$R/throughput-per-task" --engines per-task --iterations 1 \
    --meta-batch 8 --trace "${SMALL[@]}" "${COMMON[@]}"
  pack
  step 120 "batched engine, eager" "${MG[@]}" throughput --out "$R/throughput-eager" --engines batched \
    --iterations "$EAGER_ITERATIONS" --check-tasks 8 --trace "${SMALL[@]}" "${COMMON[@]}"
  pack
  FLAGS="--cuda-graph --sampler device"
  # the rows the channels-last ones are compared with, and how they were measured
  local base="$R/throughput-graph" measured=(--cuda-graph --sampler device --iterations "$ITERATIONS")
  if ! step 100 "batched engine, CUDA graph" "${MG[@]}" throughput --out "$R/throughput-graph" --engines batched \
      --cuda-graph --sampler device --iterations "$ITERATIONS" --check-tasks 0 --trace "${SMALL[@]}" "${COMMON[@]}"; then
    echo "CUDA graph with the device sampler failed: trying the host sampler"
    FLAGS="--cuda-graph --sampler host"
    base="$R/throughput-graph-host-sampler" measured=(--cuda-graph --sampler host --iterations "$ITERATIONS")
    step 100 "batched engine, CUDA graph, host sampler" "${MG[@]}" throughput \
      --out "$R/throughput-graph-host-sampler" --engines batched --cuda-graph --sampler host \
      --iterations "$ITERATIONS" --check-tasks 0 --trace "${SMALL[@]}" "${COMMON[@]}" \
      || { echo "CUDA graph capture failed: training runs eagerly"; FLAGS="--sampler device"
           base="$R/throughput-eager" measured=(--iterations "$EAGER_ITERATIONS"); }
  fi
  pack
  # the stacked network channels last (--channels-last), measured as the rows above were, for four presets that
  # run on it (iMAML-HF, on it too, left out for time), each compared with the per-task engine in float64 on 4 tasks; the training phases take it where
  # it made iMAML-GD faster and computed the same thing (faster_channels_last)
  if step 100 "batched engine, channels last (${measured[*]})" "${MG[@]}" throughput \
      --out "$R/throughput-channels-last" --engines batched --channels-last "${measured[@]}" --check-tasks 4 --trace \
      --presets omniglot-5w1s-maml,omniglot-5w1s-fomaml,omniglot-5w1s-reptile,omniglot-5w1s-imaml-gd "${SMALL[@]}" "${COMMON[@]}" \
      && faster_channels_last "$base/throughput.csv" "$R/throughput-channels-last/throughput.csv"; then
    FLAGS="$FLAGS --channels-last"
  fi
  [ "$tests_passed" = 1 ] || echo "some CUDA tests failed: a preset whose graph test failed trains eagerly"
  echo "FLAGS=\"$FLAGS\"" > "$R/flags.env"
  pack
}

faster_channels_last() {  # BASE_CSV CHANNELS_LAST_CSV: iMAML-GD at least 3% faster channels last, the same to 1e-10
  python3 - "$1" "$2" <<'PY'
import csv, math, sys
def imaml_gd(path):
    try:
        return next(row for row in csv.DictReader(open(path)) if row["preset"] == "omniglot-5w1s-imaml-gd")
    except (OSError, StopIteration):
        return None
base, nhwc = imaml_gd(sys.argv[1]), imaml_gd(sys.argv[2])
if base is None or nhwc is None:
    print("channels last: no iMAML-GD rows to compare; training keeps the default layout"); sys.exit(1)
ratio, difference = float(nhwc["tasks_per_s"]) / float(base["tasks_per_s"]), float(nhwc["max_rel_diff_vs_per_task"])
chosen = ratio >= 1.03 and math.isfinite(difference) and difference < 1e-10
print(f"channels last: iMAML-GD {float(nhwc['tasks_per_s']):.0f} tasks/s against {float(base['tasks_per_s']):.0f} "
      f"({ratio:.2f}x), float64 difference from per-task {difference:.1e}: "
      + ("training takes --channels-last" if chosen else "training keeps the default layout"))
sys.exit(0 if chosen else 1)
PY
}

compiled() {  # torch.compile (inductor, reduce-overhead) against the captured graph, for the two cheapest to compile
  step 300 "torch.compile" "${MG[@]}" throughput --out "$R/throughput-compiled" --engines batched --compile \
    --sampler device --presets omniglot-5w1s-fomaml,omniglot-5w1s-maml --iterations "$ITERATIONS" --check-tasks 0 \
    --trace "${SMALL[@]}" "${COMMON[@]}"
  pack
}

benchmarks() {  # the pytest-benchmark GPU baseline of the benchmarks that run on the device
  RESERVE=10 step 150 "GPU benchmarks" python3 -m pytest tests/benchmarks --benchmark-only --bench-device "$DEVICE" \
    -p no:cacheprovider --benchmark-storage="file://$R/benchmarks" --benchmark-save="gpu-$DEVICE" "${BENCH[@]}" -q
  pack
}

training_flags() {  # VARIANT: the engine's flags for a training run of VARIANT (TRAIN_FLAGS overrides)
  local flags="--sampler device"
  [ -f "$R/flags.env" ] && . "$R/flags.env" && flags=$FLAGS
  [ "$DEVICE" = cuda ] || flags="--sampler device"  # graphs are CUDA's
  if [[ "$flags" == *--cuda-graph* ]] && ! graph_tested "$1"; then
    echo "the captured-iteration test of $1 did not pass: training runs eagerly" >&2; flags="--sampler device"
  fi
  echo "${TRAIN_FLAGS:-$flags}"
}

evaluate() {  # RUN NAME: the run's test accuracy on EVAL_TASKS tasks
  RESERVE=10 step 60 "evaluate $2 on $EVAL_TASKS test tasks" "${MG[@]}" eval "$1" --engine batched --device "$DEVICE" \
    --tasks "$EVAL_TASKS" --no-progress
  pack
}

train_and_evaluate() {  # VARIANT MAX_MINUTES VALIDATE_EVERY [RUNS_AFTER: training runs still to come in the call]
  local variant=$1 run="$R/train-omniglot-5w1s-$1-batched" minutes flags after=${4:-0} iteration trained total
  # training time excludes validation and checkpoints: a minute of the step is left for them and start-up;
  # what is left is shared equally with the runs still to come, each keeping its own tail and minute (where a
  # share would be under 12 s, this run takes it all)
  minutes=$(python3 -c "
left = $CALL_BUDGET_S - $SECONDS
shared = (left - ($TAIL_S + 60) * (1 + $after)) / (1 + $after)
seconds = shared if shared > 12 else left - $TAIL_S - 60
print(round(min($2, seconds / 60), 2) if seconds > 12 else 'none')")
  if [ "$minutes" != none ]; then :; else
    echo "no time left in CALL_BUDGET_S=$CALL_BUDGET_S for $variant (${SECONDS}s used)"; return
  fi
  flags=$(training_flags "$variant")
  if [ -f "$run/checkpoint.pt" ]; then
    # a run carried from an earlier call or session (runs/gpu-results): it goes on for this call's minutes,
    # --max-minutes counting its whole training time
    read -r iteration trained <<< "$(progress_of "$run")"
    total=$(python3 -c "print(round($trained / 60 + $minutes, 2))")
    # shellcheck disable=SC2086  # flags is a list of flags
    step "$(python3 -c "print(int($minutes * 60 + 60))")" \
      "resume $variant at iteration $iteration for $minutes more minutes ($flags)" \
      "${MG[@]}" train --resume --out "$run" --device "$DEVICE" --engine batched $flags --max-minutes "$total" \
      --no-progress
  else
    # shellcheck disable=SC2086  # flags is a list of flags
    step "$(python3 -c "print(int($minutes * 60 + 60))")" "train $variant for $minutes minutes ($flags)" \
      "${MG[@]}" train --preset "omniglot-5w1s-$variant" --out "$run" --engine batched $flags --max-minutes "$minutes" \
      --validate-every "$3" "${TRAIN[@]}" "${COMMON[@]}"
  fi
  pack
  evaluate "$run" "$variant"
}

progress_of() {  # RUN: "ITERATION TRAIN_TIME_S" of the run's last logged row ("0 0" before any)
  python3 - "$1/metrics.csv" <<'PY'
import csv, sys
try:
    rows = list(csv.DictReader(open(sys.argv[1])))
except OSError:
    rows = []
print(rows[-1]["iteration"], rows[-1]["train_time_s"]) if rows else print(0, 0)
PY
}

paper() {  # the MAML preset at full length, over as many calls as it takes, and its first MAML_MINUTES apart
  local run="$R/train-omniglot-5w1s-maml-full" early="$R/train-omniglot-5w1s-maml-first-${MAML_MINUTES}-minutes"
  local flags iteration seconds minutes
  flags=$(training_flags maml)
  if [ ! -f "$run/config.json" ]; then
    # shellcheck disable=SC2086  # flags is a list of flags
    step "$(python3 -c "print(int($MAML_MINUTES * 60 + 60))")" "train maml for $MAML_MINUTES minutes ($flags)" \
      "${MG[@]}" train --preset omniglot-5w1s-maml --out "$run" --engine batched $flags --max-minutes "$MAML_MINUTES" \
      --iterations "$PAPER_ITERATIONS" --validate-every "$PAPER_VALIDATE_EVERY" "${TRAIN[@]}" "${COMMON[@]}"
    # the run as it stood after MAML_MINUTES of training: a copy of its own, evaluated while the run goes on
    [ -f "$run/checkpoint.pt" ] && rm -rf "$early" && cp -r "$run" "$early" && evaluate "$early" "maml after $MAML_MINUTES minutes"
  fi
  read -r iteration seconds <<< "$(progress_of "$run")"
  if [ "$iteration" -lt "$PAPER_ITERATIONS" ]; then
    # the run trains for what the call has left, less RESUME_RESERVE_S (the evaluation, should it finish, and
    # packing) and 35 s for start-up, capture and validations; should those take longer, the step's timeout
    # stops it and it saves a checkpoint first, so nothing is lost
    minutes=$(python3 -c "print(max(0.01, round(($seconds + $CALL_BUDGET_S - $SECONDS - $RESUME_RESERVE_S - 35) / 60, 2)))")
    # shellcheck disable=SC2086  # flags is a list of flags
    RESERVE=$RESUME_RESERVE_S step "$CALL_BUDGET_S" \
      "resume maml at iteration $iteration, to $PAPER_ITERATIONS iterations or $minutes minutes of training ($flags)" \
      "${MG[@]}" train --resume --out "$run" --device "$DEVICE" --engine batched $flags --max-minutes "$minutes" \
      --iterations "$PAPER_ITERATIONS" --no-progress
    pack
    read -r iteration seconds <<< "$(progress_of "$run")"
  fi
  if [ "$iteration" -ge "$PAPER_ITERATIONS" ] && [ ! -f "$run/eval.json" ]; then evaluate "$run" "maml after $iteration iterations"; fi
  [ "$iteration" -ge "$PAPER_ITERATIONS" ] || echo "maml stopped at iteration $iteration of $PAPER_ITERATIONS: run paper again to go on"
}

for phase in "$@"; do
  case "$phase" in
    measure) measure ;;
    tests)  # the CUDA tests alone (a call without measure on this machine): the graph where its test passed
      describe_device; cuda_tests; [ -f "$R/flags.env" ] || echo 'FLAGS="--cuda-graph --sampler device"' > "$R/flags.env" ;;
    bench) benchmarks ;;
    compile) compiled ;;
    maml) train_and_evaluate maml "$MAML_MINUTES" 500 ;;
    paper) paper ;;
    imaml) [[ " $* " == *" imaml-minres "* ]] && after=1 || after=0
      train_and_evaluate imaml-gd "$IMAML_MINUTES" 250 "$after" ;;
    imaml-minres) train_and_evaluate imaml-gd-minres "$IMAML_MINUTES" 250 ;;
    *) echo "unknown phase $phase (measure, tests, paper, maml, imaml, imaml-minres, bench, compile)"; exit 2 ;;
  esac
done
ls -R "$R" | head -80
