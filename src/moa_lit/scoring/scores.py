"""The run's score report (docs/modelling.md): the OOF log loss over the rows
that behave like new drugs first, then over all rows (controls at 0) and over
treated rows (they differ by about 8%, so both are given), per fold and per
target, with the prior baseline on the same rows."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from moa_lit.scoring.metric import elementwise_logloss

log = logging.getLogger(__name__)

NEW_DRUGS = "oof_logloss_new_drugs"
DRUG_THRESHOLD = "drug_threshold"  # recorded in scores.json: merge and blend use the run's own


def kept_whole(drug, drug_threshold: int) -> np.ndarray:
    """Rows of drugs with at most ``drug_threshold`` rows: ``assign_folds`` puts
    each such drug into one fold whole."""
    drug = pd.Series(np.asarray(drug))
    return (drug.map(drug.value_counts()) <= drug_threshold).to_numpy()


def new_drug_rows(drug, is_control, drug_threshold: int | None) -> np.ndarray | None:
    """The rows that behave like new drugs: treated rows of drugs kept whole in
    their fold. None, with one warning saying why, where there are no drug ids
    (or no such row); the callers then use the treated rows."""
    if drug is None or drug_threshold is None:
        why = "no cv.drug_threshold recorded in scores.json"
        if drug is None:
            why = "no drug ids (train_drug.csv; drug_id in a run's folds.csv)"
    else:
        rows = kept_whole(drug, drug_threshold) & ~np.asarray(is_control, dtype=bool)
        if rows.any():
            return rows
        why = f"no treated drug has at most cv.drug_threshold={drug_threshold} rows"
    log.warning(
        "%s: no %s (the OOF log loss over treated rows of drugs kept whole in their fold); best epochs, blend "
        "weights and optimized_metric=%s use the treated rows (oof_logloss_treated) instead",
        why, NEW_DRUGS, NEW_DRUGS,
    )
    return None


def choosing_rows(new_drugs: np.ndarray | None, is_control) -> np.ndarray:
    """The rows that choose epochs and blend weights: the new-drug rows, else the treated rows."""
    return ~np.asarray(is_control, dtype=bool) if new_drugs is None else new_drugs


def optimized_score(scores: dict, metric: str) -> float:
    """What train and the ensemble return: ``oof_logloss_new_drugs`` falls back
    to ``oof_logloss_treated`` where it is absent (new_drug_rows warned)."""
    return scores[metric] if metric in scores else scores["oof_logloss_treated"]


def headline_scores(scores: dict) -> dict:
    """The OOF log losses of a run, new drugs first (a blend's or an ensemble's members)."""
    return {k: scores[k] for k in (NEW_DRUGS, "oof_logloss", "oof_logloss_treated") if k in scores}


def brief_scores(scores: dict) -> str:
    """``headline_scores`` in a few words: "OOF 0.01786 new drugs, 0.01519 all rows, 0.01650 treated"."""
    words = {NEW_DRUGS: "new drugs", "oof_logloss": "all rows", "oof_logloss_treated": "treated"}
    return "OOF " + ", ".join(f"{v:.5f} {words[k]}" for k, v in headline_scores(scores).items())


def score_line(scores: dict, prior: bool = False) -> str:
    """The scores of an end-of-run line (train, merge, blend, ensemble), new
    drugs first; ``prior``: the prior's on the same rows after them."""
    keys = list(headline_scores(scores))
    rows = {NEW_DRUGS: f"{scores.get('n_new_drug_rows')} rows of new drugs (treated, drugs kept whole in their fold)",
            "oof_logloss": f"all {scores['n_rows']} rows (controls at 0)",
            "oof_logloss_treated": f"{scores['n_treated_rows']} treated rows"}
    line = "OOF log loss " + ", ".join(f"{scores[k]:.5f} over {rows[k]}" for k in keys)
    if prior:
        line += "; prior " + " / ".join(f"{scores[k.replace('oof_', 'prior_')]:.5f}" for k in keys)
    return line


def smoothed_prevalence(targets: np.ndarray) -> np.ndarray:
    """Each target's rate in ``targets`` with half a positive added, so a target
    unseen in training is not predicted exactly 0 (the clipped metric punishes
    that with ~34.5)."""
    targets = np.asarray(targets, dtype=np.float64)
    return (targets.sum(axis=0) + 0.5) / (len(targets) + 1.0)


def fold_prior_predictions(targets, folds, is_control, fold_ids) -> np.ndarray:
    """Out-of-fold prior: each fold's rows get its treated training rows' smoothed prevalence."""
    prior = np.full(targets.shape, np.nan)
    for k in fold_ids:
        train = (folds != k) & ~is_control
        prior[folds == k] = smoothed_prevalence(targets[train])
    prior[is_control] = 0.0
    return prior


def score_run(targets, oof, folds, is_control, fold_ids, target_names, new_drugs=None, drug_threshold=None) -> dict:
    """``new_drugs``: the rows of :func:`new_drug_rows` (None: no new-drug scores);
    ``drug_threshold``: the run's cv.drug_threshold, recorded for merge and blend."""
    rows = np.isin(folds, fold_ids)
    treated = rows & ~is_control
    new = rows & (False if new_drugs is None else new_drugs)
    # Each value's loss once; every score below is a mean over some rows (the
    # lish-moa score: over rows per target, then over targets).
    loss = elementwise_logloss(targets, oof)  # NaN on rows outside the run's folds: never read
    prior = elementwise_logloss(targets, fold_prior_predictions(targets, folds, is_control, fold_ids))
    per_target = loss[rows].mean(axis=0)

    def mean(values: np.ndarray, where: np.ndarray) -> float:
        return float(values[where].mean(axis=0).mean())

    per_fold = {}
    for k in fold_ids:
        r = folds == k
        t = r & ~is_control
        n = r & new
        per_fold[str(k)] = {
            **({NEW_DRUGS: mean(loss, n)} if n.any() else {}),
            "oof_logloss": mean(loss, r),
            "oof_logloss_treated": mean(loss, t),
            "rows": int(r.sum()),
        }
    headline = {}
    if new.any():
        headline = {
            NEW_DRUGS: mean(loss, new),
            "prior_logloss_new_drugs": mean(prior, new),
            "n_new_drug_rows": int(new.sum()),
        }
    return {
        **headline,
        "oof_logloss": float(per_target.mean()),
        "oof_logloss_treated": mean(loss, treated),
        "prior_logloss": mean(prior, rows),
        "prior_logloss_treated": mean(prior, treated),
        "n_rows": int(rows.sum()),
        "n_treated_rows": int(treated.sum()),
        **({} if drug_threshold is None else {DRUG_THRESHOLD: int(drug_threshold)}),
        "folds": [int(k) for k in fold_ids],
        "per_fold": per_fold,
        "per_target": {name: float(v) for name, v in zip(target_names, per_target)},
    }
