"""The ``metagrad`` command: one subcommand per harness.

``metagrad --help`` lists the commands without importing torch; a command's parser (its options, built from its
config dataclass) is built only when that command is asked for, and its heavy modules are imported only then."""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from bench.cli.arguments import UsageError, check_out

# command -> module in bench/cli/commands/, in the order --help lists them
COMMANDS = {
    "exact-solve": "exact_solve",
    "profile": "profile",
    "complexity": "complexity",
    "train": "train",
    "eval": "evaluate",
    "throughput": "throughput",
    "spectrum": "spectrum",
    "scaling": "scaling",
    "lake-runs": "lake_runs",
    "report": "report",
    "algorithms": "algorithms",
}
# commands whose --out names a folder (spectrum's names a CSV file)
FOLDER_OUTPUTS = ("exact-solve", "profile", "train", "throughput", "complexity", "scaling", "report")


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"bench.cli.commands.{COMMANDS[name]}")


def _asked_for(argv: Sequence[str]) -> str | None:
    """The command in ``argv``: its first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with every command listed and ``command``'s options (None: none, as ``metagrad --help`` needs)."""
    parser = argparse.ArgumentParser(
        prog="metagrad",
        description="Benchmark and profile meta-gradient algorithms (MAML, first-order MAML, Reptile, iMAML, and any "
                    "installed plug-in: `metagrad algorithms`): meta-gradient accuracy, compute and memory against "
                    "inner steps, few-shot accuracy, throughput. `metagrad COMMAND --help` gives a command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = command_module(name)
        summary, description = module.__doc__.split("\n\n", 1)  # the module's docstring says what the command does
        subparser = sub.add_parser(name, help=summary.rstrip("."), description=" ".join(description.split()))
        if name == command:
            module.add_arguments(subparser)
    return parser


def _one_line_errors() -> tuple[type[BaseException], ...]:
    """The errors a user can fix, printed as one line: ours, and the algorithms' ConfigError where they are loaded
    (they are not imported here, so that ``metagrad --help`` does not import torch)."""
    registry = sys.modules.get("algorithms.registry")
    return (UsageError, *((registry.ConfigError,) if registry else ()))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _asked_for(argv)
    args = build_parser(command).parse_args(argv)
    from bench.training.distributed import DistributedError, environment_rank

    try:
        if args.command in FOLDER_OUTPUTS:
            check_out(getattr(args, "out", None))
        command_module(args.command).run(args)
    except _one_line_errors() as error:
        if environment_rank() == 0:  # every process of a torchrun launch meets the same bad input
            print(f"metagrad {args.command}: error: {error}", file=sys.stderr)
        return 2
    except DistributedError as error:
        print(f"metagrad {args.command}: error (rank {environment_rank()}): {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if environment_rank() == 0:
            print(f"metagrad {args.command}: interrupted; finished files are in place, none half-written",
                  file=sys.stderr)
        return 130
    return 0
