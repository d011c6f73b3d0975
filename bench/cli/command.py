"""The ``metagrad`` command: one subcommand per registered harness, and the command line's own two (``report``,
``algorithms``).

The subcommands are read from the harness registry (``metagrad.bench.harnesses.registry``): a harness with a command
module of its own runs it; a harness with a config dataclass and a write function gets its command built here
(``--out``, the config's options, ``--no-progress``). ``metagrad --help`` lists the commands without importing torch;
a command's parser (its options) is built only when that command is asked for, and its heavy modules are imported
only then."""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from metagrad.bench.cli.arguments import add_config, add_no_progress, add_out, build_config, check_out
from metagrad.bench.harnesses.registry import Harness, harnesses
from metagrad.errors import MetagradError

# the command line's own commands: they read results and registries, they measure nothing
OWN_COMMANDS = {"report": "metagrad.bench.cli.commands.report", "algorithms": "metagrad.bench.cli.commands.algorithms"}


class OneLineParser(argparse.ArgumentParser):
    """A parser whose errors are one line, as every other error of the command line, with where to read more."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


class HarnessCommand:
    """The command of a harness given as a config dataclass and a write function."""

    def __init__(self, harness: Harness):
        self.harness = harness

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_out(parser)
        add_config(parser, self.harness.load("config"))
        add_no_progress(parser)

    def run(self, args: argparse.Namespace) -> None:
        config = build_config(self.harness.load("config"), args)
        self.harness.load("write")(config, args.out, progress=not args.no_progress)
        print(f"wrote {self.harness.name}'s results under {args.out}")


def commands() -> dict[str, Harness | str]:
    """Every command, in the order --help lists them: the harnesses that run, then the command line's own."""
    found: dict[str, Harness | str] = {name: harness for name, harness in harnesses().items() if harness.runs}
    return {**found, **{name: module for name, module in OWN_COMMANDS.items() if name not in found}}


def command_module(name: str) -> ModuleType | HarnessCommand:
    """What runs ``name``: a module (or an object) with ``add_arguments(parser)`` and ``run(args)``."""
    entry = commands()[name]
    if isinstance(entry, str):
        return importlib.import_module(entry)
    return entry.load("command") if entry.command else HarnessCommand(entry)


def _help(name: str, entry: Harness | str) -> tuple[str, str]:
    if isinstance(entry, Harness):
        return entry.help()
    summary, _, description = importlib.import_module(entry).__doc__.partition("\n\n")
    return summary.strip().rstrip("."), " ".join(description.split())


def _asked_for(argv: Sequence[str], known: dict) -> str | None:
    """The command in ``argv``: its first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in known else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with every command listed and ``command``'s options (None: none, as ``metagrad --help`` needs)."""
    parser = OneLineParser(
        prog="metagrad",
        description="Benchmark and profile meta-gradient algorithms (MAML, first-order MAML, Reptile, iMAML, and any "
                    "installed plug-in: `metagrad algorithms`): meta-gradient accuracy, compute and memory against "
                    "inner steps, few-shot accuracy, throughput. `metagrad COMMAND --help` gives a command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in commands().items():
        summary, description = _help(name, entry)
        subparser = sub.add_parser(name, help=summary, description=description or summary)
        if name == command:
            command_module(name).add_arguments(subparser)
    return parser


def _writes_a_folder(name: str) -> bool:
    entry = commands()[name]
    return entry.out == "folder" if isinstance(entry, Harness) else name == "report"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _asked_for(argv, commands())
    args = build_parser(command).parse_args(argv)
    from metagrad.bench.training.distributed import DistributedError, environment_rank

    try:
        if _writes_a_folder(args.command):
            check_out(getattr(args, "out", None))
        command_module(args.command).run(args)
    except MetagradError as error:  # metagrad.errors: one line, the error's own exit code
        if environment_rank() == 0:  # every process of a torchrun launch meets the same error
            print(f"metagrad {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except DistributedError as error:
        print(f"metagrad {args.command}: error (rank {environment_rank()}): {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the filesystem said no: the path and why, in one line, not a traceback
        where = f" {error.filename}" if error.filename else ""
        print(f"metagrad {args.command}: error: cannot write or read{where}: {error.strerror or error}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if environment_rank() == 0:
            print(f"metagrad {args.command}: interrupted; finished files are in place, none half-written",
                  file=sys.stderr)
        return 130
    return 0
