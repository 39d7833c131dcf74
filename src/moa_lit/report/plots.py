"""The report's three figures, drawn with matplotlib's non-interactive Agg
backend (no display needed). Each function returns a Figure and the numbers
it drew, so report.md can quote exactly what the plot shows."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless machines and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from moa_lit.scoring.metric import EPS  # noqa: E402

SEED_COLORS = plt.get_cmap("tab10").colors
LABEL_GAP = 0.06  # between the names of the worst targets, in axes fraction


def _margins(fig: plt.Figure, left: float, right: float, bottom: float, top: float, **space) -> None:
    """Fixed margins in inches: tight_layout measures every tick label of the log
    axes and costs more than drawing the figure."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, **space)


def learning_curves(curves: list) -> plt.Figure:
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
            ax.plot(e.index, e["train_loss"], "--", color=color, alpha=0.7)
            ax.plot(e.index, e["val_logloss"], "-o", color=color, markersize=3)
            if c.best_epoch is not None and c.best_epoch in e.index:
                ax.plot(c.best_epoch, e.loc[c.best_epoch, "val_logloss"], "*", color=color, markersize=14,
                        markeredgecolor="black")
        ax.set_title(f"fold {fold}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if log_y:
            ax.set_yscale("log")
    # One legend for all panels: line style says which loss, colour which seed.
    seeds = sorted({c.seed for c in curves})
    handles = [
        Line2D([], [], color="grey", linestyle="--", label="training loss"),
        Line2D([], [], color="grey", marker="o", markersize=3, label="validation log loss"),
        Line2D([], [], color="grey", marker="*", markersize=12, markeredgecolor="black", linestyle="", label="best epoch (kept)"),
        *[Line2D([], [], color=SEED_COLORS[s % len(SEED_COLORS)], linewidth=3, label=f"seed {s}") for s in seeds],
    ]
    axes.ravel()[0].legend(handles=handles, fontsize=7, loc="upper right")
    for ax in axes[:, 0]:
        ax.set_ylabel("log loss")
    for ax in axes.ravel()[len(folds):]:
        ax.set_visible(False)
    fig.suptitle("Learning curves: training vs validation loss (validation on treated rows)")
    _margins(fig, left=0.85, right=0.2, bottom=0.55, top=0.75, hspace=0.45, wspace=0.06)
    return fig


def prior_loss(positives: np.ndarray, n_rows: int) -> np.ndarray:
    """Log loss of predicting each target's own rate on every row: the no-feature reference."""
    p = np.clip(positives / n_rows, EPS, 1 - EPS)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def per_target_loss(names: list[str], loss: np.ndarray, positives: np.ndarray, n_rows: int, n_named: int = 8):
    """OOF loss of each target against its positive count (log x), the worst named."""
    fig, ax = plt.subplots(figsize=(11, 5.5))
    x = np.where(positives > 0, positives, 0.5)  # log axis: targets without positives drawn at 0.5
    ax.scatter(x, loss, s=14, alpha=0.7, label="target (OOF log loss)")
    grid = np.geomspace(x.min() * 0.8, max(positives.max(), 1) * 1.5, 200)
    ax.plot(grid, prior_loss(grid, n_rows), "k--", linewidth=1, label="predicting the target's rate (in-sample prior)")
    worst = np.argsort(-loss, kind="stable")[:n_named]
    # Names in a column right of the plot, each at its point's height where room allows
    # (worst on top, spaced apart): the worst targets often sit close together, where
    # labels beside the points would overlap.
    y0, y1 = ax.get_ylim()
    heights = []
    for j in worst:
        wanted = (loss[j] - y0) / (y1 - y0)
        heights.append(min(wanted, 0.98) if not heights else min(wanted, heights[-1] - LABEL_GAP))
    shift = max(0.0, 0.02 - heights[-1]) if heights else 0.0
    for rank, (j, h) in enumerate(zip(worst, heights)):
        ax.annotate(f"{rank + 1}. {names[j]}", xy=(x[j], loss[j]), xycoords="data",
                    xytext=(1.03, h + shift), textcoords="axes fraction", fontsize=8, va="center",
                    arrowprops={"arrowstyle": "-", "alpha": 0.35, "shrinkB": 4})
    ax.scatter(x[worst], loss[worst], s=30, facecolors="none", edgecolors="red", label=f"worst {len(worst)}")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("positives among OOF rows (log scale; 0 drawn at 0.5)")
    ax.set_ylabel("OOF log loss of the target")
    ax.set_title(f"Per-target OOF log loss, {len(names)} targets, {n_rows} rows (controls at 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.subplots_adjust(left=0.07, right=0.75, bottom=0.1, top=0.93)  # the right quarter holds the names
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
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    hist.bar(table["mean_prediction"], table["count"], width=table["mean_prediction"] * 0.35, color="grey")
    hist.set_yscale("log")
    hist.set_ylabel("predictions")
    hist.set_xlabel("mean predicted probability in bin (log scale)")
    hist.grid(alpha=0.3)
    for a in (ax, hist):
        a.minorticks_off()  # decades are enough to read, and minor log ticks are most of the drawing time
    _margins(fig, left=0.85, right=0.2, bottom=0.6, top=0.4, hspace=0.08)
    return fig
