"""One training run's folder: config.json (the run's config, where it ran, its launches), metrics.csv (a row per
validation) and checkpoint.pt (everything a resume needs), each written whole or not at all; and what other commands
add to it (eval.json, the spectra, lake_runs.json). ``Run`` is the one reader of a run folder."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from metagrad.bench.atomic import atomic_path, write_csv, write_text
from metagrad.bench.training.config import TrainConfig, resumed_config
from metagrad.errors import ConfigError, CorruptFileError

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = ("theta", "optimizer", "sampler", "iteration", "train_time_s", "tasks", "window", "rows")
METRICS_COLUMNS = ["iteration", "train_time_s", "tasks", "train_query_loss", "train_query_accuracy",
                   "val_accuracy", "val_ci95", "val_tasks", "tasks_per_s", "grad_evals", "hvp_evals",
                   "cg_negative_curvature_fraction", "cg_iterations_mean", "cg_residual_mean",
                   "inner_negative_curvature_fraction", "engine", "world_size"]


class Run:
    """One training run's folder: config.json, metrics.csv, checkpoint.pt."""

    def __init__(self, out: Path):
        self.out = out

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT

    def read_saved(self) -> dict[str, Any]:
        """config.json as written: ``config`` (the run's TrainConfig) and where it ran (device_name, torch, threads,
        launches)."""
        path = self.out / "config.json"
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"{self.out} is a file, not a run folder")
        if not path.is_file():
            raise ConfigError(f"{self.out} is not a training run (no config.json)")
        try:
            saved = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CorruptFileError(f"{path} is corrupt or not a metagrad config ({type(error).__name__})") from None
        if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
            raise CorruptFileError(f"{path} is not a metagrad run's config (no config object)")
        return saved

    def read_config(self) -> tuple[TrainConfig, dict[str, Any]]:
        """The run's TrainConfig and config.json as written."""
        saved = self.read_saved()
        try:
            return TrainConfig(**saved["config"]), saved
        except TypeError as error:
            raise CorruptFileError(f"{self.out / 'config.json'} is corrupt or not a metagrad config "
                                   f"({type(error).__name__})") from None

    def read_metrics(self) -> pd.DataFrame:
        """metrics.csv: a row per validation."""
        return pd.read_csv(self.out / "metrics.csv")

    def read_evaluation(self, split: str = "test") -> dict[str, Any] | None:
        """eval.json where ``metagrad eval`` scored the run on ``split``, else None."""
        path = self.out / "eval.json"
        evaluation = json.loads(path.read_text()) if path.is_file() else None
        return evaluation if evaluation and evaluation.get("split") == split else None

    def read_spectra(self) -> dict[str, pd.DataFrame]:
        """``metagrad spectrum``'s CSVs: "init" (at initialization, ``--at-init``) and "end" (at the checkpoint)."""
        files = {"init": "spectrum-init.csv", "end": "spectrum.csv"}
        return {key: pd.read_csv(self.out / name) for key, name in files.items() if (self.out / name).is_file()}

    def read_lake(self) -> dict[str, Any] | None:
        """lake_runs.json, ``metagrad lake-runs``'s score, where it exists."""
        path = self.out / "lake_runs.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def write_config(self, config: TrainConfig, extra: dict[str, Any]) -> None:
        write_text(self.out / "config.json", json.dumps({"config": asdict(config), **extra}, indent=2) + "\n")

    def load_checkpoint(self, device: torch.device) -> dict[str, Any]:
        """The checkpoint's contents, or a one-line error naming the file when it is not a whole one."""
        if not self.checkpoint.is_file():
            raise ConfigError(f"{self.out} has no {CHECKPOINT}")
        try:
            state = torch.load(self.checkpoint, map_location=device)
        except Exception as error:  # torch.load raises many kinds on a truncated or foreign file
            raise CorruptFileError(f"{self.checkpoint} is truncated or not a metagrad checkpoint "
                              f"({type(error).__name__})") from None
        if not isinstance(state, dict) or any(key not in state for key in CHECKPOINT_KEYS):
            raise CorruptFileError(f"{self.checkpoint} is not a checkpoint of this metagrad version (missing keys)")
        return state

    def write_learned(self, values: dict[str, list[dict[str, Any]]], initial: dict[str, list[dict[str, Any]]],
                      iteration: int) -> None:
        """meta_parameters.json: the algorithm's own learned values by group and label at the checkpoint's
        iteration, and where they started (``algorithms.meta_parameters.learned_values``)."""
        write_text(self.out / "meta_parameters.json", json.dumps({"iteration": iteration, "groups": values,
                                                                  "initial": initial}, indent=1) + "\n")

    def read_learned(self) -> dict[str, Any] | None:
        path = self.out / "meta_parameters.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """The checkpoint (``CHECKPOINT_KEYS``), then the metrics it holds as metrics.csv."""
        with atomic_path(self.checkpoint) as tmp:
            torch.save(state, tmp)
        write_csv(pd.DataFrame(state["rows"], columns=METRICS_COLUMNS), self.out / "metrics.csv")


def resume_config(out: Path, **changes: Any) -> TrainConfig:
    """What ``metagrad train --resume`` runs for the run in ``out``: its own config with ``changes``
    (``config.RESUMABLE``: how long it trains, how its iterations are computed) made."""
    return resumed_config(Run(out).read_config()[0], **changes)
