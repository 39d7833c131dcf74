"""The report's three figures, drawn with matplotlib's non-interactive Agg
backend (no display needed). Each function returns a Figure and the numbers
it drew, so report.md can quote exactly what the plot shows."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless machines and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from moa_lit.metric import EPS  # noqa: E402
from moa_lit.report.inputs import FoldCurve  # noqa: E402

SEED_COLORS = plt.get_cmap("tab10").colors


def learning_curves(curves: list[FoldCurve]) -> plt.Figure:
    """One panel per fold; each seed's train (dashed) and validation (solid) loss by epoch, best epoch starred."""
    folds = sorted({c.fold for c in curves})
    n_cols = min(len(folds), 3)
    n_rows = math.ceil(len(folds) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.2 * n_rows), squeeze=False, sharey=True)
    values = pd.concat([c.epochs for c in curves]).to_numpy().ravel()
    values = values[np.isfinite(values) & (values > 0)]
    log_y = values.size and values.max() / values.min() > 20
    for ax, fold in zip(axes.ravel(), folds):
        for c in (c for c in curves if c.fold == fold):
            color = SEED_COLORS[c.seed % len(SEED_COLORS)]
            e = c.epochs
            ax.plot(e.index, e["train_loss"], "--", color=color, alpha=0.7, label=f"seed {c.seed} train")
            ax.plot(e.index, e["val_logloss"], "-o", color=color, markersize=3, label=f"seed {c.seed} validation")
            if c.best_epoch is not None and c.best_epoch in e.index:
                ax.plot(c.best_epoch, e.loc[c.best_epoch, "val_logloss"], "*", color=color, markersize=14,
                        markeredgecolor="black", label=f"seed {c.seed} best epoch {c.best_epoch}")
        ax.set_title(f"fold {fold}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if log_y:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("log loss (train: smoothed labels)")
    for ax in axes.ravel()[len(folds):]:
        ax.set_visible(False)
    fig.suptitle("Learning curves: training vs validation loss (validation on treated rows)")
    fig.tight_layout()
    return fig


def prior_loss(positives: np.ndarray, n_rows: int) -> np.ndarray:
    """Log loss of predicting each target's own rate on every row: the no-feature reference."""
    p = np.clip(positives / n_rows, EPS, 1 - EPS)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def per_target_loss(names: list[str], loss: np.ndarray, positives: np.ndarray, n_rows: int, n_named: int = 8):
    """OOF loss of each target against its positive count (log x), the worst named."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    x = np.where(positives > 0, positives, 0.5)  # log axis: targets without positives drawn at 0.5
    ax.scatter(x, loss, s=14, alpha=0.7, label="target (OOF log loss)")
    grid = np.geomspace(0.5, max(positives.max(), 1) * 1.5, 200)
    ax.plot(grid, prior_loss(grid, n_rows), "k--", linewidth=1, label="predicting the target's rate (in-sample prior)")
    worst = np.argsort(-loss, kind="stable")[:n_named]
    for rank, j in enumerate(worst):
        ax.annotate(names[j], (x[j], loss[j]), xytext=(6, 8 - 7 * (rank % 3)), textcoords="offset points", fontsize=7,
                    arrowprops={"arrowstyle": "-", "alpha": 0.4})
    ax.scatter(x[worst], loss[worst], s=30, facecolors="none", edgecolors="red", label=f"worst {len(worst)}")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("positives among OOF rows (log scale; 0 drawn at 0.5)")
    ax.set_ylabel("OOF log loss of the target")
    ax.set_title(f"Per-target OOF log loss, {len(names)} targets, {n_rows} rows (controls at 0)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig, worst


def reliability_table(pred: np.ndarray, truth: np.ndarray, n_bins: int = 14, low: float = 1e-4) -> pd.DataFrame:
    """Predictions binned on a log scale (everything below ``low`` in the first bin):
    count, mean prediction and observed positive rate per bin."""
    edges = np.concatenate([[0.0], np.geomspace(low, 1.0, n_bins)])
    edges[-1] = 1.0 + 1e-12
    which = np.clip(np.searchsorted(edges, pred.ravel(), side="right") - 1, 0, len(edges) - 2)
    count = np.bincount(which, minlength=len(edges) - 1)
    pred_sum = np.bincount(which, weights=pred.ravel(), minlength=len(edges) - 1)
    pos_sum = np.bincount(which, weights=truth.ravel(), minlength=len(edges) - 1)
    keep = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame(
            {
                "low": edges[:-1],
                "high": np.minimum(edges[1:], 1.0),
                "count": count,
                "mean_prediction": pred_sum / count,
                "observed_rate": pos_sum / count,
                "positives": pos_sum.astype(np.int64),
            }
        )
    return table[keep].reset_index(drop=True)


def reliability(table: pd.DataFrame, n_rows: int):
    """Observed positive rate against mean prediction per bin (log-log), counts below."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(7, 7), height_ratios=[3, 1.2], sharex=True)
    floor = 10 ** math.floor(math.log10(max(table["mean_prediction"].min(), 1e-7)))
    ax.plot([floor, 1], [floor, 1], "k--", linewidth=1, label="perfect calibration")
    seen = table["observed_rate"] > 0
    se = np.sqrt(table["observed_rate"] * (1 - table["observed_rate"]) / table["count"])
    ax.errorbar(table["mean_prediction"][seen], table["observed_rate"][seen], yerr=se[seen], fmt="o-",
                capsize=3, label="observed rate per bin (±1 s.e.)")
    if (~seen).any():
        ax.plot(table["mean_prediction"][~seen], np.full((~seen).sum(), floor), "v", color="grey",
                label="bin without positives")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1.5)
    ax.set_ylabel("observed positive rate")
    ax.set_title(f"Reliability of OOF predictions ({n_rows} treated rows x all targets)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    hist.bar(table["mean_prediction"], table["count"], width=table["mean_prediction"] * 0.35, color="grey")
    hist.set_yscale("log")
    hist.set_ylabel("predictions")
    hist.set_xlabel("mean predicted probability in bin (log scale)")
    hist.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
