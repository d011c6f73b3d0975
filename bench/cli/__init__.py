"""The ``metagrad`` command (``bench/cli/command.py``); each subcommand in ``bench/cli/commands/``. Nothing outside
this package imports it."""
from metagrad.bench.cli.command import main

__all__ = ["main"]
