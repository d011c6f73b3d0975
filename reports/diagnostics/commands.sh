# The commands that wrote this folder, from the repository root (bench/diagnostics/; the data in ../shared/data).
python -m metagrad.bench.diagnostics.staged_products > reports/diagnostics/staged_products.txt
python -m metagrad.bench.diagnostics.shorter_products > reports/diagnostics/shorter_products.txt
python -m metagrad.bench.diagnostics.newton_line_search > reports/diagnostics/newton_line_search.txt
python -m metagrad.bench.diagnostics.channels_last_float32 > reports/diagnostics/channels_last_float32.txt
python -m metagrad.bench.diagnostics.line_search_memory > reports/diagnostics/line_search_memory.txt   # 4 settings x 2 forms, up to 7 GiB
python -m metagrad.bench.cli.startup > reports/diagnostics/cli_startup.txt   # on a quiet machine; wall-clock
