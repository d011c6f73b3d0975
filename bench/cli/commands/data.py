"""get the data sets: fetch Omniglot and Lake's runs, import a Mini-ImageNet, check what the data root holds.

metagrad data fetch omniglot downloads the two official archives (Lake's repository, the files and MD5 checksums
torchvision's Omniglot uses), checks them and extracts them into DATA_ROOT/omniglot-py; metagrad data fetch one-shot-runs
adds Lake's 20 one-shot runs (all_runs.zip). A download resumes where it stopped; nothing half-extracted is ever left;
--mirror URL reads the same files from a copy elsewhere. metagrad data import mini-imagenet SOURCE converts the
pickled caches (mini-imagenet-cache-*.pkl), a folder of class folders, or an ImageNet training folder with Ravi &
Larochelle's CSVs (--split-csv DIR) into DATA_ROOT/mini-imagenet, its split checked against Ravi & Larochelle's class
lists. metagrad data check lists what the data root holds, per data set and split, with counts and the digests a
training run records, and which presets it can run. The data root: --data-root, else $METAGRAD_DATA, else the user's
data folder ($XDG_DATA_HOME/metagrad or ~/.local/share/metagrad).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from metagrad.bench.data.fetch import DATASETS
    from metagrad.bench.data.imports import FORMS

    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download, check and extract a data set",
                               description="download, check and extract a data set into the data root")
    fetch.add_argument("dataset", choices=tuple(DATASETS), help="what to fetch")
    fetch.add_argument("--mirror", metavar="URL", default=None,
                       help="read the same files from this base URL (a copy of Lake's python/ folder)")
    imported = actions.add_parser("import", help="convert a Mini-ImageNet copy into the layout metagrad reads",
                                  description="convert a Mini-ImageNet copy into DATA_ROOT/mini-imagenet")
    imported.add_argument("dataset", choices=("mini-imagenet",), help="what to import")
    imported.add_argument("source", type=Path, help="the pickled caches' folder, class folders, or ImageNet's train")
    imported.add_argument("--form", choices=FORMS, default="auto", help="what SOURCE holds (default: told apart)")
    imported.add_argument("--split-csv", type=Path, default=None, metavar="DIR",
                          help="Ravi & Larochelle's train.csv, val.csv, test.csv (with an ImageNet training folder)")
    imported.add_argument("--any-classes", action="store_true",
                          help="import classes other than Ravi & Larochelle's split (said in IMPORTED.json)")
    actions.add_parser("check", help="what the data root holds, and which presets it can run",
                       description="list the data sets, splits, counts and digests the data root holds")
    for action in actions.choices.values():
        action.add_argument("--data-root", default=None, help="the data folder (default $METAGRAD_DATA, else the "
                                                              "user's data folder)")


def _root(given: str | None, create: bool) -> Path:
    import os

    from metagrad.bench.data.root import resolve_data_root, user_data_folder
    from metagrad.errors import require

    if not create:
        return resolve_data_root(given)
    require(given is None or str(given).strip(), "--data-root is empty; give the folder that holds the data")
    root = Path(given or os.environ.get("METAGRAD_DATA") or user_data_folder())
    require(not root.exists() or root.is_dir(), f"data root {root} is not a folder")
    return root


def _progress():
    from tqdm import tqdm

    bar = None

    def report(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, leave=False, disable=None)
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    return report


def run(args: argparse.Namespace) -> None:
    if args.action == "fetch":
        from metagrad.bench.data.fetch import fetch

        root = _root(args.data_root, create=True)
        placed = fetch(args.dataset, root, args.mirror, report=_progress())
        print(f"{args.dataset}: {'fetched into' if placed else 'already in'} {root}")
    elif args.action == "import":
        from metagrad.bench.data.imports import import_mini_imagenet

        root = _root(args.data_root, create=True)
        import_mini_imagenet(args.source, root, args.form, args.split_csv, args.any_classes)
        print(f"mini-imagenet: imported into {root / 'mini-imagenet'} (IMPORTED.json says from what)")
    else:
        _check(_root(args.data_root, create=False))


def _check(root: Path) -> None:
    from metagrad.bench.data.inventory import inventory
    from metagrad.bench.training.presets import SETTINGS

    holdings = inventory(root)
    print(f"data root {root}")
    width = max(len(f"{h.dataset} {h.split}") for h in holdings)
    for holding in holdings:
        what = f"{holding.dataset} {holding.split}".ljust(width)
        state = holding.counts if holding.present else "missing"
        extra = "".join(f"  {part}" for part in (f"digest {holding.digest}" if holding.digest else "", holding.note)
                        if part)
        print(f"  {what}  {state}{extra}")
    print("presets:")
    usable_sets = {h.dataset for h in holdings if h.present} - {h.dataset for h in holdings if not h.present
                                                                and h.split in ("-", "train")}
    for setting, (dataset, *_) in SETTINGS.items():
        usable = dataset in usable_sets
        fix = "" if usable else (f"  (metagrad data fetch {dataset})" if dataset == "omniglot"
                                 else f"  (metagrad data import {dataset} SOURCE)")
        print(f"  {setting}-*: {dataset}, {'ready' if usable else 'missing'}{fix}")
