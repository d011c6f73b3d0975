#!/usr/bin/env bash
# The README's small commands (each marked "small" there), one after the other, each timed, into runs/small/.
# Run from the repository root: bash reports/small-commands/run.sh   (tests/test_readme.py checks that this list is
# the README's). Writes reports/small-commands/times.txt: seconds, then the command; stops at the first that fails.
set -euo pipefail
: "${METAGRAD_DATA:?set METAGRAD_DATA to the data folder (Omniglot, Mini-ImageNet)}"
rm -rf runs/small
mkdir -p runs/small
times=reports/small-commands/times.txt
tmp=$(mktemp)
t() {
  local start end
  start=$(date +%s.%N)
  if ! "$@" > runs/small/last.log 2>&1; then
    echo "failed: $*" >&2
    tail -5 runs/small/last.log >&2
    exit 1
  fi
  end=$(date +%s.%N)
  local command="$*"
  printf "%6.1f  %s\n" "$(echo "$end - $start" | bc)" "${command//$METAGRAD_DATA/\$METAGRAD_DATA}" | tee -a "$tmp"
}
echo "# $(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores" > "$tmp"
t metagrad exact-solve --out runs/small/exact-solve --inner-steps 1,10,100 --seeds 1 --tasks 2
t metagrad profile --out runs/small/profile --dataset random-images --ways 5 --shots 1 --queries 5 --filters 16 --inner-steps 1,4,16 --cg-sweep 1,5 --repeats 1 --no-rss
t metagrad complexity --out runs/small/complexity --kappas 10,30,100 --epsilons 0.01,0.0001 --dim 20
t metagrad train --preset omniglot-5w1s-maml --out runs/small/maml --max-minutes 1 --validate-every 20 --validation-tasks 20
t metagrad eval runs/small/maml --tasks 100
t metagrad train --preset omniglot-20w1s-maml --omniglot-split lake --out runs/small/lake --max-minutes 1 --validate-every 25 --validation-tasks 10
t metagrad lake-runs runs/small/lake
t metagrad throughput --out runs/small/throughput --presets omniglot-5w1s-maml,omniglot-5w1s-imaml-gd --iterations 2 --check-tasks 2
t torchrun --standalone --nproc-per-node 2 -m metagrad train --preset omniglot-5w1s-maml --out runs/small/maml-2p --iterations 20 --validate-every 20 --validation-tasks 10 --threads 1
t metagrad train --preset omniglot-5w1s-maml --out runs/small/maml-1p --iterations 20 --validate-every 20 --validation-tasks 10 --threads 1
t metagrad scaling runs/small/maml-1p runs/small/maml-2p --out runs/small/scaling
t metagrad train --preset omniglot-5w1s-imaml-gd --out runs/small/imaml --iterations 10 --validate-every 10 --validation-tasks 10
t metagrad spectrum runs/small/imaml --tasks 4 --steps 20
t metagrad exact-solve --out runs/small/anil-exact-solve --algorithms maml,anil --inner-steps 1,10,100 --seeds 1 --tasks 2
t metagrad profile --out runs/small/anil-profile --algorithms maml,anil --dataset random-images --ways 5 --shots 1 --queries 5 --filters 16 --inner-steps 1,4,16 --repeats 1 --no-rss
t metagrad train --preset omniglot-5w1s-anil --out runs/small/anil --max-minutes 1 --validate-every 20 --validation-tasks 20
t metagrad train --preset omniglot-5w1s-imaml-lambda-layer --out runs/small/lambda --iterations 10 --validate-every 10 --validation-tasks 10
t metagrad variance --out runs/small/variance --tasks 8
t metagrad train --dataset folder --data-root $METAGRAD_DATA/mini-imagenet/train --image-size 32 --algorithm maml --set inner_steps=1 --set inner_lr=0.1 --meta-batch 8 --iterations 20 --validate-every 20 --validation-tasks 20 --out runs/small/folder
t metagrad report --out runs/small/report --results runs/small
t metagrad history --out runs/small/history
mv "$tmp" "$times"
