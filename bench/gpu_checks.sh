#!/usr/bin/env bash
# All GPU checks in one call of the lent GPU machine (README, "GPU results"), about 8 minutes:
#   1. tasks/s of both engines on the Omniglot 5-way 1-shot presets (eager), then the batched engine with
#      the iteration captured as a CUDA graph (bench/steps.py: written and tested on the CPU's eager path
#      only until this runs; a failed capture is logged and the run goes on);
#   2. the MAML and iMAML-GD 5-way 1-shot presets trained with the batched engine for TRAIN_MINUTES each
#      (graph-captured, or eager if capture failed in step 1), each evaluated on the 600 test tasks.
# The call carries `.whl` (the higher wheel, which the GPU image lacks) and `.device-data` (Omniglot
# packed by bench.omniglot.pack_omniglot: the image folders are too large to travel). Results go to
# $OUT/gpu-results.tar.gz, refreshed after every step so a timeout keeps what finished, and the log
# to $OUT/gpu-log.txt. Run it with timeout_s 600 and carry [".whl", ".device-data"].
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" METAGRAD_CACHE=/tmp/metagrad-cache PYTHONUNBUFFERED=1
TRAIN_MINUTES=${TRAIN_MINUTES:-2}
R=/tmp/gpu-results
mkdir -p "$R"
exec > >(tee "$OUT/gpu-log.txt") 2>&1
pack() { tar -czf "$OUT/gpu-results.tar.gz" --exclude=checkpoint.pt -C "$R" .; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0], torch.cuda.get_device_name())"
} > "$R/device.txt" 2>&1
cat "$R/device.txt"
COMMON=(--device cuda --data-root .device-data --no-progress)
timeout 150 python3 -m bench.cli throughput --out "$R/throughput-cuda" --iterations 5 "${COMMON[@]}"
pack
GRAPH=--cuda-graph
timeout 90 python3 -m bench.cli throughput --out "$R/throughput-cuda-graph" --engines batched --iterations 20 \
  --cuda-graph "${COMMON[@]}" || { echo "CUDA graph capture failed: training runs eagerly"; GRAPH=; }
pack
for variant in maml imaml-gd; do
  run="$R/train-omniglot-5w1s-$variant-batched"
  timeout $((TRAIN_MINUTES * 60 + 90)) python3 -m bench.cli train --preset "omniglot-5w1s-$variant" --out "$run" \
    --engine batched $GRAPH --max-minutes "$TRAIN_MINUTES" --validate-every 250 "${COMMON[@]}"
  timeout 60 python3 -m bench.cli eval "$run" --engine batched --device cuda --no-progress
  pack
done
