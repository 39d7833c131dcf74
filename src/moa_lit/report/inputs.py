"""What the report reads from a run directory, and nothing else: the report
can be rebuilt on a machine without the training data (the labels come from
the run's ``labels.csv``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moa_lit import schema
from moa_lit.errors import MoAError
from moa_lit.runs import files
from moa_lit.runs.manifest import RunManifest
from moa_lit.runs.run_dir import RunDir


@dataclass
class FoldCurve:
    seed: int
    fold: int
    epochs: pd.DataFrame  # index epoch; columns train_loss, val_logloss
    best_epoch: int | None


@dataclass
class ReportInputs:
    run_dir: Path
    manifest: RunManifest
    scores: dict
    oof: np.ndarray  # OOF rows x targets, in the manifest's target order
    labels: np.ndarray  # same shape, 0/1
    is_control: np.ndarray
    curves: list[FoldCurve]
    config_text: str | None
    overrides: str | None  # .hydra/overrides.yaml as written


def _curves(run: RunDir, manifest: RunManifest) -> list[FoldCurve]:
    curves = []
    for fold_dir in run.folds_of(manifest):
        epochs = run.curve(fold_dir.seed, fold_dir.fold)
        if epochs is None:
            continue  # logger disabled (or a blend): the report says so instead of failing
        best = fold_dir.read_info().get("best_epoch") if fold_dir.info_file.is_file() else None
        curves.append(FoldCurve(fold_dir.seed, fold_dir.fold, epochs, best))
    return curves


def read_report_inputs(run_dir: Path) -> ReportInputs:
    run = RunDir(run_dir)
    manifest = run.manifest()
    scores = run.read_scores()
    oof_frame = run.read_oof()
    names = manifest.target_names
    absent = [n for n in names if n not in oof_frame.columns]
    if absent:
        raise MoAError(f"{run.path / files.OOF}: no column {absent[0]!r} of run.json; expected files of one run")
    labels = run.labels(names)
    rows = labels.rows_of(oof_frame[schema.ID], run.path / files.LABELS)
    return ReportInputs(
        run_dir=run.path,
        manifest=manifest,
        scores=scores,
        oof=oof_frame[names].to_numpy(dtype=np.float64),
        labels=labels.targets[rows],
        is_control=labels.is_control[rows],
        curves=_curves(run, manifest),
        config_text=run.text(files.CONFIG),
        overrides=run.text(files.HYDRA_OVERRIDES),
    )
