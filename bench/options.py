"""Configuration fields that carry their own command-line help, so that each option of ``metagrad`` is defined once:
on the frozen dataclass that holds it (its type, its default, its help), and ``bench/cli/`` builds the parser from
those. A field made with ``option`` is on the command line; a plain field is not."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

MISSING = dataclasses.MISSING


# the largest integer an option takes: torch's generators and tensors hold 64-bit integers
LARGEST_INTEGER = 2**63 - 1
# the most an option of each kind may ask for: past these a run would not fit in memory or would not end in days
MOST_STEPS = 100_000  # inner steps, CG steps, Lanczos steps
MOST_TASKS = 1_000_000  # tasks in a pool that is scored or studied
MOST_IMAGES = 10_000  # ways, shots, queries, a meta-batch: what is held in memory at once
MOST_REPEATS = 10_000  # seeds, repeats, timed iterations of a measurement
MOST_ITERATIONS = 1_000_000_000  # outer steps of a training run
MOST_DIMENSIONS = 10_000  # a linear-regression problem's dimension (its d x d matrices)
MOST_FILTERS = 4096  # a ConvNet's channels
MOST_IMAGE_SIDE = 1024  # a folder's images' side, in pixels
MOST_MINUTES = 1e6  # a time limit, in minutes (about two years)


def option(default: Any = MISSING, help: str = "", *, default_factory: Callable[[], Any] | Any = MISSING,
           flag: str | None = None, choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
           shown: str | None = None, auto: str | None = None, metavar: str | None = None,
           nested: bool = False, at_most: float | None = None) -> Any:
    """A dataclass field that is a command-line option.

    ``help``: what it is (the parser adds the default); ``flag``: the option's name when it is not the field's
    (``--no-rss`` for ``rss``: a boolean defaulting to True is turned off by its flag); ``choices``: the values it
    takes, or a function returning them (the algorithm registry, read when the parser is built); ``shown``: the
    default as --help words it, where the value alone would not say (None: "2/(L+mu)"); ``auto``: the option also
    takes ``auto``, read as None (decided later), and this says what auto picks; ``nested``: the field is a
    dataclass whose own options join the command's; ``at_most``: the largest value (each element's, for a list) the
    machine can hold or do in reasonable time. Every option also has a domain of its kind (``out_of_domain``)."""
    metadata = {"help": help, "flag": flag, "choices": choices, "shown": shown, "auto": auto, "metavar": metavar,
                "nested": nested, "at_most": at_most}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def annotation(field: dataclasses.Field) -> str:
    """The field's type as written in source ("int", "tuple[int, ...] | None"), whether or not its module wrote
    ``from __future__ import annotations``."""
    kind = field.type
    if isinstance(kind, str):
        return kind
    return kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")


def is_option(field: dataclasses.Field) -> bool:
    return "help" in field.metadata


def flag_of(field: dataclasses.Field) -> str:
    """The option's flag, as the command line spells it."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def options_of(config: type) -> list[dataclasses.Field]:
    """The command-line fields of a config dataclass, nested configs' included, in their order."""
    found = []
    for field in dataclasses.fields(config):
        if not is_option(field):
            continue
        if field.metadata["nested"]:
            found += options_of(field.default_factory if field.default_factory is not MISSING else type(field.default))
        else:
            found.append(field)
    return found


def flag(config: type, name: str) -> str:
    """The flag of ``config``'s option ``name``, nested configs' included."""
    return flag_of(next(field for field in options_of(config) if field.name == name))


def arguments(config: type, **values: Any) -> list[str]:
    """The command-line words that give ``config``'s fields these values (None left out; a boolean given only where
    it differs from its default, by its flag), as a user would type them: what a re-run passes to the command."""
    fields = {field.name: field for field in options_of(config)}
    words: list[str] = []
    for name, value in values.items():
        field = fields[name]
        if annotation(field) == "bool" or isinstance(value, bool):
            if value is not None and value != field.default:
                words.append(flag_of(field))
        elif isinstance(value, tuple):
            words += [flag_of(field), ",".join(str(v) for v in value)]
        elif value is not None:
            words += [flag_of(field), str(value)]
    return words


def out_of_domain(field: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` is outside the option's domain, or None: every number finite and an integer within 64 bits, a
    seed (a field named ``seed`` or ``*_seed``) from 0 to 2**63 - 1, nothing above the option's ``at_most``, and a
    list without repeats (a name or a count given twice would be run, and written, twice)."""
    values = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and len(set(value)) < len(value):
        twice = sorted({str(v) for v in value if value.count(v) > 1})
        return f"gives {', '.join(twice)} more than once"
    limit = field.metadata.get("at_most")
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            return f"must be a finite number, got {item}"
        if isinstance(item, int) and abs(item) > LARGEST_INTEGER:
            return f"must be at most 2**63 - 1 in size, got {item}"
        if (field.name == "seed" or field.name.endswith("_seed")) and item < 0:
            return f"must be from 0 to 2**63 - 1, got {item}"
        if limit is not None and item > limit:
            return f"must be at most {_number(limit)}, got {_number(item)}"
    return None


def _number(value: float) -> str:
    """An integer as its digits (1000001, not 1e+06), any other number as %g."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"
