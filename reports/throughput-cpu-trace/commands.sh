# iMAML-HF's iteration profiled on the 2-core Intel Xeon, one thread (torch.profiler: trace-*.txt), from the repository root:
metagrad throughput --out reports/throughput-cpu-trace --presets omniglot-5w1s-imaml-hf --engines per-task,batched --threads 1 --iterations 2 --check-tasks 0 --trace
