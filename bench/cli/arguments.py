"""The parser built from the config dataclasses' fields (``bench.options.option``), and the configs built back from
what the user typed: each option's type, default and help live once, on the field."""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

from metagrad.bench.options import LARGEST_INTEGER, MISSING, annotation, flag_of, options_of, out_of_domain
from metagrad.errors import ConfigError

SCALARS = {"int": int, "float": float, "str": str}
MOST_THREADS = 1024  # torch.set_num_threads crashes the process far above what any machine has


def shown(value: object) -> str:
    """A default as --help shows it, the way the option takes it (a tuple comma-separated)."""
    if isinstance(value, tuple):
        return ",".join(shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def comma_separated(kind: type):
    """An argparse type: comma-separated values of ``kind`` (which names are known is the config's to say, in
    one line)."""
    noun = {int: "integers", float: "numbers", str: "names"}[kind]

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {noun}, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated {noun}, got {text!r}")
        return values

    return parse


def key_value(text: str) -> tuple[str, object]:
    """``--set KEY=VALUE``: the value read as JSON where it is JSON (numbers, true/false), else as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed: object = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default is MISSING else field.default


def add_field(parser: argparse.ArgumentParser, field: dataclasses.Field, overrides: bool = False) -> None:
    """One option for one field. ``overrides``: the option's absence keeps what a preset (or the field's default)
    says, so its default is None and --help says so."""
    meta = field.metadata
    kind = annotation(field).replace(" | None", "")
    default = _default(field)
    choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
    said = meta["shown"] or shown(default)
    text = meta["help"]
    if meta["auto"]:
        text += f"; auto: {meta['auto']}"
        said = "auto"
    text += f" (default: the preset's, else {said})" if overrides else f" (default {said})"
    kwargs: dict[str, Any] = {"dest": field.name, "help": text}
    if kind == "bool":
        kwargs["action"] = "store_false" if default and not overrides else "store_true"
        kwargs["help"] = meta["help"]
        if overrides:
            kwargs["default"] = None
    else:
        if kind.startswith("tuple["):
            element = SCALARS[kind[len("tuple["):-len(", ...]")]]
            kwargs["type"] = comma_separated(element)
            if choices:
                kwargs["help"] = text.replace(" (default", f", from {', '.join(choices)} (default", 1)
        else:
            kwargs["type"] = SCALARS[kind]
            if choices is not None:
                kwargs["choices"] = ("auto", *choices) if meta["auto"] else tuple(choices)
        kwargs["default"] = None if overrides else ("auto" if meta["auto"] else default)
        kwargs["metavar"] = meta["metavar"] or (None if "choices" in kwargs else flag_of(field)[2:].upper().replace("-", "_"))
    parser.add_argument(flag_of(field), **kwargs)


def add_config(parser: argparse.ArgumentParser, config: type, overrides: bool = False) -> None:
    """An option for every command-line field of ``config`` (nested configs' included)."""
    for field in options_of(config):
        add_field(parser, field, overrides)


def given(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The fields of ``config`` the user gave (an option left out is None; ``auto`` is None too)."""
    values = {}
    for field in options_of(config):
        value = getattr(args, field.name, None)
        if value is not None and value != "auto" and (annotation(field) != "bool" or value != _default(field)):
            check_domain(field, value)
            values[field.name] = value
    return values


def check_domain(field: dataclasses.Field, value: Any) -> None:
    """A one-line error where the value is outside the option's domain (``options.out_of_domain``)."""
    why = out_of_domain(field, value)
    if why:
        raise ConfigError(f"{flag_of(field)} {why}")


def build_config(config: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """``config`` from the options (those not typed keep the field's default), nested configs built the same way;
    ``fixed`` fields come from elsewhere (a command-level option)."""
    values = {}
    for field in dataclasses.fields(config):
        if field.name in fixed or "help" not in field.metadata:
            continue
        if field.metadata["nested"]:
            values[field.name] = build_config(type(_default(field)), args)
        elif hasattr(args, field.name):
            value = getattr(args, field.name)
            values[field.name] = None if field.metadata["auto"] and value == "auto" else value
            if values[field.name] is not None:
                check_domain(field, values[field.name])
    return config(**values, **fixed)


def check_out(out: Path | None) -> None:
    """--out names a folder for the results (created if missing), never a file, and one that can be written: checked
    before any work starts, so that no result is computed only to be lost on its write."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the results")
    existing = next(folder for folder in (out, *out.absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, so no folder can be made below it")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".metagrad-write-check-"):
            pass
    except OSError as error:
        raise ConfigError(f"--out {out}: {existing} cannot be written ({error.strerror or error})") from None


def add_out(parser: argparse.ArgumentParser, what: str = "output folder (created if missing)") -> None:
    parser.add_argument("--out", required=True, type=Path, help=what)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_threads(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch" + note)


def add_device(parser: argparse.ArgumentParser, default: str | None = "cpu", shown: str = "cpu") -> None:
    parser.add_argument("--device", default=default, help=f"torch device: cpu or cuda[:N] (default {shown})")


def seed(text: str) -> int:
    """A seed, as every seed option takes it: an integer from 0 to 2**63 - 1."""
    value = int(text)
    if not 0 <= value <= LARGEST_INTEGER:
        raise argparse.ArgumentTypeError(f"a seed is from 0 to 2**63 - 1, got {text}")
    return value


def add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")


def add_set(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--set", type=key_value, action="append", metavar="KEY=VALUE", help=text)


def set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        if not 1 <= threads <= MOST_THREADS:
            raise ConfigError(f"--threads must be from 1 to {MOST_THREADS}, got {threads}")
        torch.set_num_threads(threads)


def check_device(device: str) -> None:
    import torch

    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"--device must be cpu or cuda[:N], got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine")
