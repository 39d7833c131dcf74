"""One MoA ranking per compound from the probabilities of its rows (doses x
times), with how well the rows agree, and the measurement that decides the
pooling (measured by ``python -m moa_lit.bench.explain``)."""

from __future__ import annotations


import numpy as np
import pandas as pd
from scipy.special import expit, logit


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
