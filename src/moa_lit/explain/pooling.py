"""One MoA ranking per compound from the probabilities of its rows (doses x
times), with how well the rows agree, and the measurement that decides the
pooling (``evaluate_pooling``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from moa_lit import schema

COMPOUND = "compound_id"
POOLINGS = ("mean", "logit_mean")
CALL_COLUMNS = [COMPOUND, "n_rows", "rank", "moa", "probability", "row_min", "row_max", "row_std", "rows_ranking_first"]
_EPS = 1e-6


def pool(probabilities: np.ndarray, groups: np.ndarray, how: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """(unique groups in first-seen order, pooled probabilities per group).
    ``mean`` averages probabilities; ``logit_mean`` averages log-odds (a
    geometric pooling: every row must agree for a high score)."""
    codes, uniques = pd.factorize(pd.Series(groups), sort=False)
    values = logit(np.clip(probabilities, _EPS, 1 - _EPS)) if how == "logit_mean" else probabilities
    sums = np.zeros((len(uniques), probabilities.shape[1]))
    np.add.at(sums, codes, values)
    pooled = sums / np.bincount(codes, minlength=len(uniques))[:, None]
    return np.asarray(uniques), (expit(pooled) if how == "logit_mean" else pooled)


def compound_calls(
    probabilities: np.ndarray,
    ids: np.ndarray,
    compounds: np.ndarray,
    names: list[str],
    top_k: int,
    is_control: np.ndarray,
    how: str = "mean",
) -> pd.DataFrame:
    """One row per compound and rank: the pooled probability of each of its
    top_k MoAs and the replicate agreement on it: the range and spread of the
    rows' probabilities and the share of rows that rank it first themselves.
    Control rows rank nothing (their probabilities are 0 by definition)."""
    treated = ~np.asarray(is_control)
    p, groups = probabilities[treated], np.asarray(compounds)[treated]
    uniques, pooled = pool(p, groups, how)
    codes = pd.factorize(pd.Series(groups), sort=False)[0]
    row_first = p.argmax(axis=1)
    names = np.asarray(names)
    records = []
    for g, compound in enumerate(uniques):
        rows = p[codes == g]
        order = np.argsort(-pooled[g], kind="stable")[:top_k]
        for rank, t in enumerate(order, start=1):
            records.append(
                {
                    COMPOUND: compound,
                    "n_rows": len(rows),
                    "rank": rank,
                    "moa": names[t],
                    "probability": pooled[g, t],
                    "row_min": rows[:, t].min(),
                    "row_max": rows[:, t].max(),
                    "row_std": rows[:, t].std(),
                    "rows_ranking_first": float((row_first[codes == g] == t).mean()),
                }
            )
    return pd.DataFrame.from_records(records, columns=CALL_COLUMNS)


def best_true_rank(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: the 1-based rank of its highest-ranked true MoA (rows with a label only)."""
    hits = np.take_along_axis(labels > 0.5, np.argsort(-probabilities, axis=1, kind="stable"), axis=1)
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, probabilities.shape[1] + 1)


@dataclass
class PoolingResult:
    n_drugs: int
    n_rows: int
    rows: dict  # single-row metrics, averaged per drug then over drugs
    pooled: dict  # {pooling: metrics of the pooled ranking}


def _metrics(ranks: np.ndarray) -> dict[str, np.ndarray]:
    return {"top1": ranks == 1, "top5": ranks <= 5, "mrr": 1.0 / ranks}


def evaluate_pooling(oof: np.ndarray, labels: np.ndarray, drugs: np.ndarray, is_control: np.ndarray,
                     max_rows: int = 18) -> PoolingResult:
    """On OOF rows of labelled treated drugs with at most ``max_rows`` rows (the
    drugs a drug-aware split holds out whole, so no fold model saw any of their
    rows): single rows against each pooling, every drug weighted equally."""
    keep = ~np.asarray(is_control) & (labels.sum(axis=1) > 0)
    drugs = np.asarray(drugs)
    sizes = pd.Series(drugs[keep]).value_counts()
    keep &= pd.Series(drugs).map(sizes).fillna(0).to_numpy() <= max_rows
    p, y, d = oof[keep], labels[keep], drugs[keep]
    codes, uniques = pd.factorize(pd.Series(d), sort=False)
    rows = {k: float((np.bincount(codes, weights=v) / np.bincount(codes)).mean())
            for k, v in _metrics(best_true_rank(p, y)).items()}
    first_row = np.unique(codes, return_index=True)[1]
    pooled = {how: {k: float(v.mean()) for k, v in _metrics(best_true_rank(pool(p, d, how)[1], y[first_row])).items()}
              for how in POOLINGS}
    return PoolingResult(len(uniques), int(keep.sum()), rows, pooled)
