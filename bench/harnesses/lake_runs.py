"""Lake et al.'s (2015) Omniglot benchmark: 20 runs of 20-way one-shot classification (`metagrad lake-runs`).

Each run (``omniglot-py/extras/one-shot-classification-all_runs.zip``) holds 20 training images, one
per class, drawn from the 20 evaluation alphabets, 20 test images and the answer key. A run is scored
as the paper's protocol adapts: the run's own inner loop adapts theta on the 20 training images
(labels 1..20 as the file names number them), then the 20 test images are classified together, so
BatchNorm's batch statistics see the whole run, as in the transductive setting every run of this suite
uses. The images are processed exactly as the loader processes Omniglot's (the same 105x105 bitmaps).
"""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from metagrad.algorithms import Batch
from metagrad.bench.atomic import write_text
from metagrad.bench.data.omniglot import decode_image
from metagrad.bench.data.root import resolve_data_root
from metagrad.errors import ConfigError

RUNS_ZIP = Path("omniglot-py") / "extras" / "one-shot-classification-all_runs.zip"
# Lake, Salakhutdinov and Tenenbaum (2015), Science, 20-way one-shot classification error.
PUBLISHED_ERROR = {"people": 0.045, "Bayesian Program Learning": 0.033}

Predict = Callable[[Tensor, Tensor, Tensor], Tensor]  # (support x, support y, query x) -> query labels


@dataclass(frozen=True)
class LakeRun:
    name: str
    training: Tensor  # uint8 [20, 28, 28]: class k is training/class{k+1:02}.png
    test: Tensor  # uint8 [20, 28, 28]: test/item01.png ... item20.png
    answers: Tensor  # long [20]: the class of each test image, from class_labels.txt


def load_lake_runs(root: Path) -> list[LakeRun]:
    """The 20 runs from the zip below the data root, decoded as the Omniglot loader decodes."""
    path = root / RUNS_ZIP
    if not path.is_file():
        raise ConfigError(f"Lake's one-shot runs missing: {path}")
    runs = []
    try:
        with zipfile.ZipFile(path) as archive:
            names = sorted({name.split("/")[0] for name in archive.namelist() if name.startswith("run")})
            for name in names:
                key = archive.read(f"{name}/class_labels.txt").decode().split()
                pairs = list(zip(key[0::2], key[1::2]))
                classes = [f"{name}/training/class{k:02d}.png" for k in range(1, len(pairs) + 1)]
                items = [f"{name}/test/item{k:02d}.png" for k in range(1, len(pairs) + 1)]
                answer_of = dict(pairs)
                answers = torch.tensor([classes.index(answer_of[item]) for item in items])

                def decoded(members: list[str], archive: zipfile.ZipFile = archive) -> Tensor:
                    return torch.from_numpy(np.stack([decode_image(io.BytesIO(archive.read(m))) for m in members]))

                runs.append(LakeRun(name, decoded(classes), decoded(items), answers))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise ConfigError(f"{path} is not Lake's one-shot runs archive ({type(error).__name__}: {error})") from None
    return runs


def score_runs(runs: list[LakeRun], predict: Predict, dtype: torch.dtype = torch.float32) -> pd.DataFrame:
    """Errors per run: ``predict`` gets the run's training images (labels 0..19) and its test images."""
    rows = []
    for run in runs:
        support_x = (run.training.to(dtype) / 255.0).unsqueeze(1)
        query_x = (run.test.to(dtype) / 255.0).unsqueeze(1)
        predicted = predict(support_x, torch.arange(len(run.training)), query_x)
        errors = int((predicted.cpu() != run.answers).sum())
        rows.append({"run": run.name, "errors": errors, "items": len(run.answers),
                     "error_rate": errors / len(run.answers)})
    return pd.DataFrame(rows)


def lake_runs(run_dir: Path, device: str | None = None) -> dict[str, Any]:
    """Score a training run's checkpoint on Lake's 20 runs; writes ``RUN/lake_runs.json``."""
    from metagrad.bench.training.evaluation import load_trained, mean_and_ci95

    trained = load_trained(run_dir, device)
    config, algorithm, model, theta = trained.config, trained.algorithm, trained.model, trained.theta
    if config.dataset != "omniglot" or config.ways != 20:
        raise ConfigError(f"Lake's runs are 20-way Omniglot; {run_dir} is {config.ways}-way {config.dataset}")
    if config.omniglot_split != "lake":
        raise ConfigError(f"{run_dir} was trained on the {config.omniglot_split!r} split, whose training characters "
                          "include Lake's evaluation alphabets; train with --omniglot-split lake")
    dev = theta.device

    def predict(support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        phi = algorithm.adapt(model, theta, Batch(support_x.to(dev), support_y.to(dev)))
        with torch.no_grad():
            return model.forward(phi, query_x.to(dev)).argmax(dim=-1)

    frame = score_runs(load_lake_runs(resolve_data_root(config.data_root)), predict, theta.dtype)
    error_rate, ci95 = mean_and_ci95(frame["error_rate"].tolist())
    result = {
        "error_rate": error_rate, "ci95": ci95, "runs": frame.to_dict("records"),
        "published_error_rate": PUBLISHED_ERROR, "iteration": trained.iteration, "preset": config.preset,
        "algorithm": config.algorithm, "omniglot_split": config.omniglot_split,
        "protocol": "adapt on the run's 20 training images with the run's inner loop; the 20 test images "
                    "classified together (BatchNorm batch statistics over them)",
    }
    write_text(run_dir / "lake_runs.json", json.dumps(result, indent=2) + "\n")
    return result
