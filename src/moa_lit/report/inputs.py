"""What the report reads from a run directory, and nothing else: the report
can be rebuilt on a machine without the training data.

The one file written for the report is ``oof_labels.csv``: for each OOF row,
its sig_id, cp_type and positive targets joined by ``|`` (readable, and a
hundred times smaller than the 0/1 matrix)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moa_lit import run_files, schema
from moa_lit.errors import MoAError
from moa_lit.run_tables import read_run_csv
from moa_lit.run_manifest import RunManifest, read_manifest

LABEL_SEPARATOR = "|"
POSITIVES = "positives"


def oof_labels_table(ids, cp_type, targets: np.ndarray, names: list[str]) -> pd.DataFrame:
    names = np.asarray(names)
    positives = [LABEL_SEPARATOR.join(names[row > 0.5]) for row in np.asarray(targets)]
    return pd.DataFrame({schema.ID: np.asarray(ids), schema.CP_TYPE: np.asarray(cp_type), POSITIVES: positives})


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


def _need(path: Path) -> Path:
    if not path.is_file():
        raise MoAError(f"{path}: missing; expected it in every finished training run (the report is built from it)")
    return path


def _labels(path: Path, ids: pd.Series, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    table = pd.read_csv(_need(path), dtype=str, keep_default_na=False)
    if not np.array_equal(table[schema.ID].to_numpy(), ids.to_numpy()):  # training writes both in one order
        table = table.set_index(schema.ID)
        missing = ids[~ids.isin(table.index)]
        if len(missing):
            raise MoAError(f"{path}: no row for sig_id {missing.iloc[0]} of {run_files.OOF}; expected files of one run")
        table = table.loc[ids.to_numpy()]
    column = {name: j for j, name in enumerate(names)}
    labels = np.zeros((len(table), len(names)), dtype=np.float64)
    for i, text in enumerate(table[POSITIVES].to_numpy()):
        for name in text.split(LABEL_SEPARATOR) if text else ():
            labels[i, column[name]] = 1.0
    return labels, (table[schema.CP_TYPE] == schema.CONTROL).to_numpy()


def _curves(run_dir: Path, manifest: RunManifest) -> list[FoldCurve]:
    curves = []
    for seed in manifest.seeds:
        for fold in manifest.folds:
            metrics = run_dir / run_files.LOGS / f"seed{seed}_fold{fold}" / "metrics.csv"
            info = run_files.fold_dir(run_dir, seed, fold) / run_files.FOLD_INFO
            if not metrics.is_file():
                continue  # logger disabled: the report says so instead of failing
            # CSVLogger writes train and validation values of an epoch on separate rows.
            epochs = pd.read_csv(metrics).groupby("epoch")[["train_loss", "val_logloss"]].first()
            best = run_files.read_json(info).get("best_epoch") if info.is_file() else None
            curves.append(FoldCurve(seed, fold, epochs, best))
    return curves


def _optional_text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def read_report_inputs(run_dir: Path) -> ReportInputs:
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    scores = run_files.read_json(_need(run_dir / run_files.SCORES))
    oof_frame = read_run_csv(_need(run_dir / run_files.OOF))
    names = manifest.target_names
    absent = [n for n in names if n not in oof_frame.columns]
    if absent:
        raise MoAError(f"{run_dir / run_files.OOF}: no column {absent[0]!r} of run.json; expected files of one run")
    labels, is_control = _labels(run_dir / run_files.OOF_LABELS, oof_frame[schema.ID], names)
    overrides = _optional_text(run_dir / ".hydra" / "overrides.yaml")
    return ReportInputs(
        run_dir=run_dir,
        manifest=manifest,
        scores=scores,
        oof=oof_frame[names].to_numpy(dtype=np.float64),
        labels=labels,
        is_control=is_control,
        curves=_curves(run_dir, manifest),
        config_text=_optional_text(run_dir / run_files.CONFIG),
        overrides=overrides,
    )
