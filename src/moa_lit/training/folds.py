"""Drug-aware multilabel stratified K-fold (docs/modelling.md, docs/data.md):
rows of one drug share labels, so a row-wise split would put a drug in both
training and validation and make the CV score optimistic."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from moa_lit.errors import MoAError
from moa_lit.scoring.scores import kept_whole

log = logging.getLogger(__name__)


def _stratified_fold_ids(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number of each row of ``labels`` from MultilabelStratifiedKFold."""
    fold = np.full(len(labels), -1, dtype=np.int64)
    if len(labels) == 0:
        return fold
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    # iterstrat only uses X for its length.
    for k, (_, val_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold[val_idx] = k
    return fold


def assign_folds(
    targets: np.ndarray,
    drug: pd.Series | np.ndarray | None,
    n_folds: int = 5,
    seed: int = 42,
    drug_threshold: int = 18,
) -> np.ndarray:
    """Fold number of every row, stratified on the 0/1 ``targets``; ``drug``:
    each row's drug id, or None for plain row-wise stratification."""
    targets = np.asarray(targets)
    n_rows = len(targets)
    if n_folds < 2:
        raise MoAError(f"cv.n_folds={n_folds}: expected at least 2 folds")
    if n_rows < n_folds:
        raise MoAError(f"cv.n_folds={n_folds} is larger than the number of training rows ({n_rows})")
    if drug is None:
        return _stratified_fold_ids(targets, n_folds, seed)

    drug = pd.Series(np.asarray(drug), name="drug_id")
    small = kept_whole(drug, drug_threshold)  # the new-drug rows of the scores (scoring/scores.py)
    fold = np.full(n_rows, -1, dtype=np.int64)

    # Whole drugs: one label row per drug (all its rows carry the same labels).
    if small.any():
        first_row = drug[small].drop_duplicates()
        if len(first_row) < n_folds:
            raise MoAError(
                f"only {len(first_row)} drugs have <= cv.drug_threshold={drug_threshold} rows, "
                f"fewer than cv.n_folds={n_folds}; lower cv.n_folds or cv.drug_threshold"
            )
        drug_fold = _stratified_fold_ids(targets[first_row.index.to_numpy()], n_folds, seed)
        fold[small] = pd.Series(drug_fold, index=first_row.to_numpy()).loc[drug[small].to_numpy()].to_numpy()

    # Frequent drugs: their rows are spread over folds.
    fold[~small] = _stratified_fold_ids(targets[~small], n_folds, seed)

    assert (fold >= 0).all()
    log.info(
        "folds: %d drugs kept whole (<= %d rows), %d rows of %d frequent drugs split row-wise",
        drug[small].nunique(),
        drug_threshold,
        int((~small).sum()),
        drug[~small].nunique(),
    )
    return fold
