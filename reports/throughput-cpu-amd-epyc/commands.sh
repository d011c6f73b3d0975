# The CPU's default engine by task size (each algorithm's cpu_batched_max_step_images, bench/training/engines.py), checked on an AMD EPYC
# (2 cores, 2 threads) on 2026-11-29 at its two ends, from the repository root, one after the other:
metagrad throughput --out reports/throughput-cpu-amd-epyc/5w1s --threads 2 --iterations 3 --check-tasks 8 --no-progress
metagrad throughput --out reports/throughput-cpu-amd-epyc/20w5s --presets omniglot-20w5s-maml,omniglot-20w5s-fomaml,omniglot-20w5s-imaml-gd --threads 2 --iterations 2 --check-tasks 0 --no-progress
# The batched engines of the algorithms that learn more than theta against their per-task engines, beside MAML's and
# iMAML-GD's, on the same AMD EPYC on 2026-12-07 (their cpu_batched_max_step_images), one after the other:
metagrad throughput --out reports/throughput-cpu-amd-epyc/learned-5w1s --presets omniglot-5w1s-maml,omniglot-5w1s-meta-sgd,omniglot-5w1s-maml-lslr,omniglot-5w1s-imaml-gd,omniglot-5w1s-imaml-lambda-scalar,omniglot-5w1s-imaml-lambda-parameter --threads 2 --iterations 3 --check-tasks 8 --no-progress
metagrad throughput --out reports/throughput-cpu-amd-epyc/learned-20w1s --presets omniglot-20w1s-imaml-gd,omniglot-20w1s-imaml-lambda-scalar,omniglot-20w1s-imaml-lambda-parameter --threads 2 --iterations 2 --check-tasks 0 --no-progress
