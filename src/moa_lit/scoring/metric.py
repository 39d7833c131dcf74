"""The competition metric, computed in one place: mean column-wise binary log loss."""

from __future__ import annotations

import numpy as np

EPS = 1e-15


def elementwise_logloss(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Binary log loss of each value, predictions clipped to [EPS, 1 - EPS]."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.clip(np.asarray(y_pred, dtype=np.float64), EPS, 1.0 - EPS)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    return -(y_true * np.log(y_pred) + (1.0 - y_true) * np.log1p(-y_pred))


def per_target_logloss(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Binary log loss of each target column."""
    return elementwise_logloss(y_true, y_pred).mean(axis=0)


def mean_logloss(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The lish-moa score: the mean over targets of each target's log loss."""
    return float(per_target_logloss(y_true, y_pred).mean())
