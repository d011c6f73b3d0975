"""Diagnostics: the measurements behind numbers cited in the code and in ``reports/notes/`` that no harness makes.

Each runs as ``python -m metagrad.bench.diagnostics.NAME`` (``--help`` for its options) and prints a small table; the
committed outputs are in ``reports/diagnostics/`` with the commands that made them (``commands.sh`` there).
``tests/test_diagnostics.py`` runs each at a tiny size.
"""
