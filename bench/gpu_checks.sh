#!/usr/bin/env bash
# All GPU checks in one call of the lent GPU machine (README, "GPU results"): the CUDA profile
# (Figure 2b) and short iMAML training runs on Omniglot 5-way 1-shot with their 600-task evaluation.
# The call carries `.whl` (the higher wheel, which the GPU image lacks) and `.device-data` (Omniglot
# packed by bench.omniglot.pack_omniglot: the image folders are too large to travel). Results go to
# $OUT/gpu-results.tar.gz, refreshed after every step so a timeout keeps what finished, and the log
# to $OUT/gpu-log.txt.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" METAGRAD_CACHE=/tmp/metagrad-cache PYTHONUNBUFFERED=1
TRAIN_MINUTES=${TRAIN_MINUTES:-1.5}
R=/tmp/gpu-results
mkdir -p "$R"
pack() { tar -czf "$OUT/gpu-results.tar.gz" --exclude=checkpoint.pt -C "$R" .; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0], torch.cuda.get_device_name())"
} > "$R/device.txt" 2>&1
cat "$R/device.txt"
timeout 200 python3 -m bench.cli profile --device cuda --out "$R/profile-cuda" --data-root .device-data --repeats 5 --no-progress
pack
for variant in imaml-gd imaml-hf; do
  timeout 170 python3 -m bench.cli train --preset "omniglot-5w1s-$variant" --device cuda \
    --out "$R/train-omniglot-5w1s-$variant" --data-root .device-data --max-minutes "$TRAIN_MINUTES" \
    --validate-every 50 --no-progress
  timeout 60 python3 -m bench.cli eval "$R/train-omniglot-5w1s-$variant" --no-progress
  pack
done
