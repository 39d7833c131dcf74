"""What ``merge``, ``blend`` and ``experiment=ensemble`` share: reading
finished runs, refusing runs of other data, carrying ``untrusted`` marks
over, scoring combined OOF predictions with the labels the runs hold (no
training data is read), and writing the result as a complete run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moa_lit import schema
from moa_lit.errors import MoAError
from moa_lit.fs_errors import check_writable_folder
from moa_lit.report import build_report
from moa_lit.runs import files
from moa_lit.runs.manifest import RunManifest
from moa_lit.runs.run_dir import Labels, RunDir, changed_data_files
from moa_lit.scoring.scores import DRUG_THRESHOLD, new_drug_rows, score_run

FINISHED = "a finished run directory of python -m moa_lit.train"


def run_folders(value) -> list[Path]:
    """``runs=``: a list of folders, or one plain path (never its characters);
    each folder once, since a run given twice would count twice."""
    from omegaconf import OmegaConf

    values = [] if value is None else list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]
    folders = [Path(str(v)).expanduser() for v in values]  # str(): a folder named 2024 comes as a number
    seen = set()
    for folder in folders:
        if folder.resolve() in seen:
            raise MoAError(f"runs: {folder} is given twice; expected each run once")
        seen.add(folder.resolve())
    return folders


def output_run(output_dir: Path, run_dirs: list[Path]) -> RunDir:
    """``output_dir`` checked before any run is read: writable, apart from the
    runs, new or empty (checked again when it is claimed)."""
    check_writable_folder(output_dir, "output_dir")
    target = RunDir(output_dir)
    target.check_apart_from(run_dirs, "output_dir")
    target.check_may_write("output_dir")
    return target


@dataclass
class FinishedRun:
    run: RunDir
    folds: pd.DataFrame
    oof: pd.DataFrame
    submission: pd.DataFrame | None
    scores: dict  # scores.json, {} without one

    @property
    def path(self) -> Path:
        return self.run.path


def read_finished(path: Path) -> FinishedRun:
    run = RunDir(path)
    folds, oof = run.read(files.FOLDS, FINISHED), run.read(files.OOF, FINISHED)
    return FinishedRun(run, folds, oof, run.read(files.SUBMISSION, None), run.read(files.SCORES, None) or {})


def check_same_data(runs: list[FinishedRun]) -> None:
    """Every run was trained on the data files of the first (the SHA-1s of its ``data.json``)."""
    first, *others = runs
    saved = first.run.read(files.DATA_FINGERPRINT, None) or {}
    for other in others:
        changed = changed_data_files(saved, other.run.read(files.DATA_FINGERPRINT, None) or {})
        if changed:
            raise MoAError(
                f"runs: {other.path} was trained on other data than {first.path}: {changed[0]}; "
                f"expected runs of the same data files ({files.DATA_FINGERPRINT})"
            )


def carried_untrusted(runs: list[FinishedRun]) -> tuple[list[str], bool]:
    """The runs' ``untrusted`` marks, one line per marked run, and whether every
    marked run was accepted as it is (``allow_worse_than_prior=true``)."""
    marks, accepted = [], True
    for r in runs:
        reasons = r.scores.get("untrusted")
        if reasons:
            marks.append(f"{r.path} is untrusted ({'; '.join(reasons)})")
            accepted = accepted and bool((r.run.read(files.SETTINGS, None) or {}).get("allow_worse_than_prior"))
    return marks, accepted


def labels_in_fold_order(source: RunDir, folds: pd.DataFrame, names: list[str]) -> Labels:
    """The labels the run holds, in the order of its ``folds.csv`` rows."""
    labels = source.labels(names)
    if not np.array_equal(labels.ids, folds[schema.ID].to_numpy()):
        raise MoAError(
            f"{source.path / files.LABELS}: its rows differ from {source.path / files.FOLDS}; expected files of one run"
        )
    return labels


def new_drugs_of(run: FinishedRun, labels: Labels) -> tuple[np.ndarray | None, int | None]:
    """A finished run's new-drug rows as train found them (its folds.csv's drug
    ids, the cv.drug_threshold its scores.json records) and that threshold."""
    threshold = run.scores.get(DRUG_THRESHOLD)
    drug = run.folds[schema.DRUG] if schema.DRUG in run.folds else None
    return new_drug_rows(drug, labels.is_control, threshold), threshold


def score_oof(labels: Labels, folds: pd.DataFrame, oof: pd.DataFrame, names: list[str], new_drugs=None,
              drug_threshold=None) -> dict:
    """scores.json's numbers for OOF predictions of some of the rows, as train
    computes them (``new_drugs``, ``drug_threshold``: :func:`new_drugs_of`)."""
    fold_of_row = folds["fold"].to_numpy()
    rows = labels.rows_of(oof[schema.ID], Path(files.OOF))
    full = np.full(labels.targets.shape, np.nan)
    full[rows] = oof[names].to_numpy(dtype=np.float64)
    fold_ids = sorted(int(k) for k in np.unique(fold_of_row[rows]))
    return score_run(labels.targets, full, fold_of_row, labels.is_control, fold_ids, names, new_drugs, drug_threshold)


def weighted_average(frames: list[pd.DataFrame], weights, what: str, paths: list[Path]) -> pd.DataFrame:
    """sig_id + the weighted average of the frames' probability columns."""
    first = frames[0]
    for path, frame in zip(paths[1:], frames[1:]):
        if not (frame[schema.ID].equals(first[schema.ID]) and list(frame.columns) == list(first.columns)):
            raise MoAError(f"{paths[0] / what} and {path / what} have different rows or columns; expected runs of the same data")
    columns = list(first.columns[1:])
    values = np.tensordot(np.asarray(weights, dtype=np.float64), np.stack([f[columns].to_numpy(dtype=np.float64) for f in frames]), axes=1)
    out = pd.DataFrame(values, columns=columns)
    out.insert(0, schema.ID, first[schema.ID].to_numpy())
    return out


def write_combined(out: RunDir, source: RunDir, manifest: RunManifest, folds: pd.DataFrame, oof: pd.DataFrame,
                   submission: pd.DataFrame | None, scores: dict) -> None:
    """A complete run: what ``predict`` reads, the labels and data fingerprint
    of ``source``, scores.json last, then its report."""
    out.write_folds(folds)
    files.write_text((source.path / files.LABELS).read_text(), out.path / files.LABELS)
    if source.has(files.DATA_FINGERPRINT):
        out.write_json(files.DATA_FINGERPRINT, source.read(files.DATA_FINGERPRINT))
    out.write_manifest(manifest)
    out.write_predictions(oof, submission)
    out.write_scores(scores)
    build_report(out.path)
