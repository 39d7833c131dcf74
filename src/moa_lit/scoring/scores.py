"""The run's score report: OOF log loss over all rows (controls at 0) and over
treated rows only (they differ by about 8%, so both are always given), the
per-fold and per-target losses, and the prior baseline on the same rows."""

from __future__ import annotations

import numpy as np

from moa_lit.scoring.metric import mean_logloss, per_target_logloss


def smoothed_prevalence(targets: np.ndarray) -> np.ndarray:
    """Each target's rate in ``targets`` with half a positive added, so a target
    unseen in training is not predicted exactly 0 (the clipped metric punishes
    that with ~34.5)."""
    targets = np.asarray(targets, dtype=np.float64)
    return (targets.sum(axis=0) + 0.5) / (len(targets) + 1.0)


def fold_prior_predictions(targets, folds, is_control, fold_ids) -> np.ndarray:
    """Out-of-fold prior: each fold's rows get the treated training rows' prevalence,
    smoothed by half a positive so a target absent from a fold's training rows
    is not predicted exactly 0 (which the clipped metric punishes with ~34.5)."""
    prior = np.full(targets.shape, np.nan)
    for k in fold_ids:
        train = (folds != k) & ~is_control
        prior[folds == k] = smoothed_prevalence(targets[train])
    prior[is_control] = 0.0
    return prior


def score_run(targets, oof, folds, is_control, fold_ids, target_names) -> dict:
    rows = np.isin(folds, fold_ids)
    treated = rows & ~is_control
    prior = fold_prior_predictions(targets, folds, is_control, fold_ids)
    per_target = per_target_logloss(targets[rows], oof[rows])
    per_fold = {}
    for k in fold_ids:
        r = folds == k
        t = r & ~is_control
        per_fold[str(k)] = {
            "oof_logloss": mean_logloss(targets[r], oof[r]),
            "oof_logloss_treated": mean_logloss(targets[t], oof[t]),
            "rows": int(r.sum()),
        }
    return {
        "oof_logloss": float(per_target.mean()),
        "oof_logloss_treated": mean_logloss(targets[treated], oof[treated]),
        "prior_logloss": mean_logloss(targets[rows], prior[rows]),
        "prior_logloss_treated": mean_logloss(targets[treated], prior[treated]),
        "n_rows": int(rows.sum()),
        "n_treated_rows": int(treated.sum()),
        "folds": [int(k) for k in fold_ids],
        "per_fold": per_fold,
        "per_target": {name: float(v) for name, v in zip(target_names, per_target)},
    }
