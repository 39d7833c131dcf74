"""One fold's predictions on disk. ``predictions.npz`` is the last file a fold
writes (atomically), so its presence means the fold finished: a resumed run
loads it instead of training the fold again. Predictions are checked before
they are written: a run never writes a NaN or a value outside [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moa_lit.runs import files as run_files
from moa_lit.errors import MoAError


class InvalidPredictionsError(MoAError):
    """Predictions that are not finite probabilities: nothing is written."""


@dataclass
class FoldPredictions:
    val_rows: np.ndarray  # row numbers of the fold's treated validation rows
    oof: np.ndarray  # val_rows x targets
    test: np.ndarray | None  # test rows x targets, or None without a test file


def check_probabilities(values: np.ndarray, what: str) -> None:
    """Refuse NaN, infinite or out-of-[0, 1] predictions with one line saying where."""
    values = np.asarray(values)
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InvalidPredictionsError(
            f"{what}: {int(bad.sum())} predictions are not finite probabilities in [0, 1] "
            f"(first: row {row}, target {col}, value {values[row, col]}); nothing was written. "
            "The model diverged: lower model.optimizer.lr / model.scheduler.max_lr, "
            "or check the features for NaN/inf values"
        )


def fold_finished(fold_path: Path) -> bool:
    return (Path(fold_path) / run_files.FOLD_PREDICTIONS).is_file()


def save_fold_predictions(fold_path: Path, preds: FoldPredictions, label: str) -> None:
    check_probabilities(preds.oof, f"{label} out-of-fold predictions")
    arrays = {"val_rows": preds.val_rows, "oof": preds.oof.astype(np.float32)}
    if preds.test is not None:
        check_probabilities(preds.test, f"{label} test predictions")
        arrays["test"] = preds.test.astype(np.float32)
    # float32 loses nothing: predict_proba computes float32 sigmoids.
    run_files.write_npz(Path(fold_path) / run_files.FOLD_PREDICTIONS, **arrays)


def load_fold_predictions(
    fold_path: Path, expected_val_rows: np.ndarray, n_test: int | None, n_targets: int, label: str
) -> FoldPredictions:
    """A finished fold's predictions, checked against this run's folds and test file."""
    path = Path(fold_path) / run_files.FOLD_PREDICTIONS
    with np.load(path) as saved:
        val_rows = saved["val_rows"]
        oof = saved["oof"].astype(np.float64)
        test = saved["test"].astype(np.float64) if "test" in saved.files else None
    if not np.array_equal(val_rows, expected_val_rows) or oof.shape != (len(expected_val_rows), n_targets):
        raise MoAError(
            f"{path}: {label} was saved for other validation rows or targets than this run's; "
            "resume=true needs the same data and cv settings (or start a new run)"
        )
    if (test is None) != (n_test is None) or (test is not None and test.shape != (n_test, n_targets)):
        raise MoAError(
            f"{path}: {label} was saved for another test file than this run's; "
            "resume=true needs the same data (or start a new run)"
        )
    return FoldPredictions(val_rows=val_rows, oof=oof, test=test)
