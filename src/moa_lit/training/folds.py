"""Drug-aware multilabel stratified K-fold, as described in docs/data.md.

Rows of one drug share labels, so a row-wise split puts the same drug in train
and validation and the CV score becomes optimistic. Drugs with at most
``drug_threshold`` rows go to folds whole (MultilabelStratifiedKFold over the
per-drug label matrix); the rows of the few very frequent drugs are spread over
folds row-wise (MultilabelStratifiedKFold over those rows), which is the scheme
that made CV track the hidden leaderboard.
"""

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
    """Fold number (0..n_folds-1) of every row.

    ``targets`` is the (rows x targets) 0/1 matrix used for stratification;
    ``drug`` the drug id of each row, or None for plain row-wise stratification.
    """
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
    small_rows = np.flatnonzero(small)
    if len(small_rows):
        first_row = drug.iloc[small_rows].drop_duplicates()
        drug_ids = first_row.to_numpy()
        if len(drug_ids) < n_folds:
            raise MoAError(
                f"only {len(drug_ids)} drugs have <= cv.drug_threshold={drug_threshold} rows, "
                f"fewer than cv.n_folds={n_folds}; lower cv.n_folds or cv.drug_threshold"
            )
        drug_fold = _stratified_fold_ids(targets[first_row.index.to_numpy()], n_folds, seed)
        fold_of_drug = pd.Series(drug_fold, index=drug_ids)
        fold[small_rows] = fold_of_drug.loc[drug.iloc[small_rows].to_numpy()].to_numpy()

    # Frequent drugs: their rows are spread over folds.
    big_rows = np.flatnonzero(~small)
    if len(big_rows):
        fold[big_rows] = _stratified_fold_ids(targets[big_rows], n_folds, seed)

    assert (fold >= 0).all()
    log.info(
        "folds: %d drugs kept whole (<= %d rows), %d rows of %d frequent drugs split row-wise",
        drug.iloc[small_rows].nunique() if len(small_rows) else 0,
        drug_threshold,
        len(big_rows),
        drug.iloc[big_rows].nunique() if len(big_rows) else 0,
    )
    return fold
