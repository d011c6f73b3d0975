# The measurements behind the CPU's default engine by task size (each algorithm's cpu_batched_max_step_images, bench/training/engines.py),
# run one after the other on the 2-core Intel Xeon on 2026-11-29, from the repository root:
metagrad throughput --out reports/throughput-cpu-task-sizes/1-20w5s --presets omniglot-20w5s-maml,omniglot-20w5s-fomaml,omniglot-20w5s-imaml-gd --threads 2 --iterations 2 --check-tasks 0
metagrad throughput --out reports/throughput-cpu-task-sizes/2-5w5s-20w1s-mini --presets omniglot-5w5s-maml,omniglot-5w5s-imaml-gd,omniglot-20w1s-maml,omniglot-20w1s-imaml-gd,mini-imagenet-5w1s-maml,mini-imagenet-5w1s-imaml-gd --threads 2 --iterations 2 --check-tasks 0
metagrad throughput --out reports/throughput-cpu-task-sizes/3-repeats-reptile --presets omniglot-20w1s-imaml-gd,omniglot-20w1s-maml,omniglot-5w5s-imaml-gd,omniglot-20w5s-maml,omniglot-5w5s-reptile,omniglot-20w1s-reptile --threads 2 --iterations 2 --check-tasks 0
metagrad throughput --out reports/throughput-cpu-task-sizes/4-imaml-hf-maml-5w5s --presets omniglot-5w5s-imaml-hf,omniglot-20w1s-imaml-hf,omniglot-5w5s-maml --threads 2 --iterations 2 --check-tasks 0
