# Both engines' tasks per second on the Omniglot 5-way 1-shot presets, on the 2-core Intel Xeon on 2026-11-29, from the
# repository root (the re-run's command, bench/reporting/regenerate.py):
metagrad throughput --out reports/throughput-cpu --threads 2 --iterations 3 --check-tasks 8
