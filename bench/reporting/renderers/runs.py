"""Training runs as the report reads them: a run folder's config.json, metrics.csv and, where present, eval.json,
the spectra of ``metagrad spectrum`` and ``lake_runs.json``; which run stands for a cell of Tables 2 and 3."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from metagrad.bench.harnesses.harness import Result
from metagrad.bench.training.config import TrainConfig
from metagrad.bench.training.presets import SETTINGS, preset, variant_of
from metagrad.bench.training.run_folder import Run
from metagrad.errors import CorruptFileError


@dataclass(frozen=True)
class TrainingRun:
    name: str  # the folder, relative to its results root
    config: dict[str, Any]
    environment: dict[str, Any]  # config.json's other fields: device_name, torch, threads, ...
    metrics: pd.DataFrame
    evaluation: dict[str, Any] | None  # eval.json on the test split
    spectra: dict[str, pd.DataFrame] = field(default_factory=dict)  # "init" / "end": metagrad spectrum's CSVs
    lake: dict[str, Any] | None = None  # lake_runs.json: metagrad lake-runs

    @property
    def in_curvature_study(self) -> bool:
        """Whether its system's spectrum was recorded at initialization and at the end (``metagrad spectrum
        --at-init``, then ``metagrad spectrum``): the study of iMAML's indefinite systems, whose reduced networks and
        changed lambdas are shown in its own table and figures, never as a cell of Tables 2 and 3."""
        return "init" in self.spectra and "end" in self.spectra

    @property
    def setting(self) -> str:
        c = self.config
        return f"{c['dataset']}-{c['ways']}w{c['shots']}s"

    @property
    def variant(self) -> str:
        if self.config.get("preset"):
            return self.config["preset"][len(self.setting) + 1:]
        return variant_of(self.config["algorithm"], self.config["hyperparameters"])

    @property
    def differences(self) -> list[str]:
        """Where the run's settings depart from its preset's (as the preset stands today)."""
        name = self.config.get("preset")
        if not name:
            return ["no preset"]
        reference = preset(name)
        out = []
        for key, value in sorted(self.config["hyperparameters"].items()):
            expected = reference["hyperparameters"].get(key)
            if value != expected:
                out.append(f"{key} {value:g} (preset {expected:g})" if isinstance(value, float) and
                           isinstance(expected, float) else f"{key} {value} (preset {expected})")
        for key in ("meta_batch", "meta_lr", "queries", "outer_optimizer", "meta_lr_final", "train_shots",
                    "train_queries"):
            default = TrainConfig.__dataclass_fields__[key].default  # what a run or preset without the key ran
            if self.config.get(key, default) != reference.get(key, default):
                out.append(f"{key} {self.config.get(key, default)} (preset {reference.get(key, default)})")
        if self.config.get("filters") is not None:
            out.append(f"filters {self.config['filters']} (preset: the dataset's default)")
        return out

    @property
    def on_gpu(self) -> bool:
        return str(self.config.get("device", "cpu")).startswith("cuda")

    @property
    def device(self) -> str:
        name = self.environment.get("device_name", self.config.get("device", "?"))
        if self.on_gpu:
            return name
        threads = (self.evaluation or {}).get("threads", self.environment.get("threads"))
        return f"{name} ({threads} thread{'s' if threads != 1 else ''})"

    @property
    def iterations(self) -> int:
        if self.evaluation:
            return int(self.evaluation["iteration"])
        return int(self.metrics["iteration"].max()) if len(self.metrics) else 0

    @property
    def train_minutes(self) -> float:
        if self.evaluation:
            return self.evaluation["train_time_s"] / 60
        return float(self.metrics["train_time_s"].max()) / 60 if len(self.metrics) else 0.0


def read_run(folder: Path, name: str) -> TrainingRun | None:
    """The run in ``folder`` (``training.run_folder.Run`` reads it), or None where its config.json is of another
    kind."""
    run = Run(folder)
    try:
        saved = run.read_saved()
    except CorruptFileError:
        return None
    environment = {key: value for key, value in saved.items() if key != "config"}
    return TrainingRun(name, saved["config"], environment, run.read_metrics(), run.read_evaluation(),
                       run.read_spectra(), run.read_lake())


def read_runs(results: list[Result]) -> list[TrainingRun]:
    """The training runs among ``results``, by name (a folder with a config.json of another kind is left out)."""
    runs = [run for result in results if (run := read_run(result.folder, result.name)) is not None]
    return sorted(runs, key=lambda run: run.name)


def setting_label(setting: str) -> str:
    """"Omniglot 5-way 1-shot" for ``omniglot-5w1s``; a data set the paper has not, by its name."""
    if setting in SETTINGS:
        dataset, ways, shots, _ = SETTINGS[setting]
    else:
        dataset, ways, shots = re.fullmatch(r"(.+)-(\d+)w(\d+)s", setting).groups()
    names = {"omniglot": "Omniglot", "mini-imagenet": "Mini-ImageNet"}
    return f"{names.get(dataset, dataset)} {ways}-way {shots}-shot"


def settings_of(runs: list[TrainingRun]) -> list[str]:
    """The settings the runs trained in: the paper's, in its order, then the others (a user's data set) by name."""
    order = list(SETTINGS)
    return sorted({run.setting for run in runs}, key=lambda s: (s not in SETTINGS, order.index(s) if s in SETTINGS
                                                                 else 0, s))


def representative_run(runs: list[TrainingRun], setting: str, variant: str) -> TrainingRun | None:
    """The run shown in a table cell: evaluated, of this setting and variant; those matching the
    preset as it stands first, then the longest (meta-iterations, then training time), then by name."""
    candidates = [r for r in runs if r.evaluation and r.setting == setting and r.variant == variant]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (bool(r.differences), -r.iterations, -r.train_minutes, r.name))


def training_length(run: TrainingRun) -> str:
    planned = int(run.config.get("iterations", 0))
    minutes = run.train_minutes
    return f"{run.iterations:,} of {planned:,} it, {minutes:.1f} min" if minutes < 10 else \
        f"{run.iterations:,} of {planned:,} it, {minutes:.0f} min"


def table_runs(runs: list[TrainingRun]) -> list[TrainingRun]:
    """The runs that may stand for a cell of Tables 2 and 3, and in the validation and test figures."""
    return [run for run in runs if not run.in_curvature_study
            and run.config.get("omniglot_split", "random") == "random"]  # Lake's split tests other characters
