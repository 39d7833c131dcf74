"""Writes ``<run>/report/``: three PNG figures and report.md tying them to the
run's scores (from scores.json, so the numbers agree), data fingerprint and
config. Built only from files in the run folder (the labels from its
``labels.csv``), so ``python -m moa_lit.report`` can rebuild it anywhere,
without the training data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from moa_lit import schema
from moa_lit.errors import MoAError
from moa_lit.runs import files as run_files
from moa_lit.runs.manifest import RunManifest
from moa_lit.runs.run_dir import RunDir
from moa_lit.report import plots
from moa_lit.scoring.scores import NEW_DRUGS, headline_scores

DIGITS = 5  # scores are shown as f"{value:.5f}"


@dataclass
class FoldCurve:
    seed: int
    fold: int
    epochs: pd.DataFrame  # index epoch; columns train_loss, val_logloss
    best_epoch: int | None


@dataclass
class ReportInputs:
    run_dir: Path
    manifest: RunManifest
    scores: dict
    oof: np.ndarray  # OOF rows x targets, in the manifest's target order
    labels: np.ndarray  # same shape, 0/1
    is_control: np.ndarray
    curves: list[FoldCurve]


def _curves(run: RunDir, manifest: RunManifest) -> list[FoldCurve]:
    curves = []
    for fold_dir in run.folds_of(manifest):
        epochs = run.curve(fold_dir.seed, fold_dir.fold)
        if epochs is None:
            continue  # logger disabled (or a blend): the report says so instead of failing
        best = fold_dir.read_info().get("best_epoch") if fold_dir.info_file.is_file() else None
        curves.append(FoldCurve(fold_dir.seed, fold_dir.fold, epochs, best))
    return curves


def read_report_inputs(run_dir: Path) -> ReportInputs:
    run = RunDir(run_dir)
    manifest = run.manifest()
    scores = run.read(run_files.SCORES)
    oof_frame = run.read(run_files.OOF)
    names = manifest.target_names
    absent = [n for n in names if n not in oof_frame.columns]
    if absent:
        raise MoAError(f"{run.path / run_files.OOF}: no column {absent[0]!r} of run.json; expected files of one run")
    labels = run.labels(names)
    rows = labels.rows_of(oof_frame[schema.ID], run.path / run_files.LABELS)
    return ReportInputs(
        run_dir=run.path,
        manifest=manifest,
        scores=scores,
        oof=oof_frame[names].to_numpy(dtype=np.float64),
        labels=labels.targets[rows],
        is_control=labels.is_control[rows],
        curves=_curves(run, manifest),
    )


def _save(fig, path: Path) -> None:
    """As PNG, named: the temporary file has no .png suffix."""
    try:
        with run_files.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.{DIGITS}f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731  a target named "a|b" stays one cell
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _fingerprint_rows(data: dict) -> list[list]:
    """One row per entry; a file's details (size, hash, ...) on its row as key=value."""
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            value = json.dumps(value)
        rows.append([key, value])
    return rows


def scores_section(scores: dict) -> list[str]:
    change = lambda model, prior: f"{100 * (model / prior - 1):+.1f}%" if prior else "n/a"  # noqa: E731
    lines = ["## Scores", "",
             "Mean column-wise binary log loss of the out-of-fold predictions (lower is better); "
             "the prior predicts each target's rate in the fold's training rows.", ""]
    kinds = {NEW_DRUGS: ("new drugs (treated rows of drugs kept whole in their fold)", "n_new_drug_rows"),
             "oof_logloss": ("all rows (controls at 0)", "n_rows"), "oof_logloss_treated": ("treated rows", "n_treated_rows")}
    lines += _table(
        ["rows", "count", "OOF log loss", "prior log loss", "change vs prior (negative: better)"],
        [[kinds[k][0], scores[kinds[k][1]], fmt(scores[k]), fmt(scores[k.replace("oof_", "prior_")]),
          change(scores[k], scores[k.replace("oof_", "prior_")])] for k in headline_scores(scores)],
    )
    if NEW_DRUGS not in scores:
        lines += ["", "No new-drug score: the run had no drug ids (train_drug.csv) or no drug kept whole in its fold, "
                      "so a drug may have rows in training and validation and these scores read optimistic for "
                      "compounds never profiled."]
    summaries = {(s["seed"], s["fold"]): s for s in scores.get("fold_summaries", [])}
    seeds = scores.get("seeds", sorted({s for s, _ in summaries}))
    rows = []
    for fold, per in scores.get("per_fold", {}).items():
        best = ", ".join(str(summaries.get((s, int(fold)), {}).get("best_epoch")) for s in seeds)
        rows.append([fold, per["rows"], fmt(per.get(NEW_DRUGS)), fmt(per["oof_logloss"]), fmt(per["oof_logloss_treated"]), best])
    lines += ["", "Per fold:", ""]
    lines += _table(["fold", "rows", "OOF log loss, new drugs", "all rows", "treated rows",
                     f"best epoch (seed {', '.join(map(str, seeds))})"], rows)
    return lines


def build_report(run_dir: Path) -> Path:
    inputs = read_report_inputs(Path(run_dir))
    run = RunDir(inputs.run_dir)
    out = run.path / run_files.REPORT
    out.mkdir(exist_ok=True)
    scores, manifest = inputs.scores, inputs.manifest
    names = manifest.target_names
    n_rows = len(inputs.oof)
    treated = ~inputs.is_control
    made_of = (
        f"a blend of {len(manifest.members)} runs over {len(manifest.folds)} fold(s)"
        if manifest.is_blend
        else f"{len(manifest.seeds)} seed(s) x {len(manifest.folds)} fold(s)"
    )
    lines = [f"# Run report: {inputs.run_dir.name}", "",
             f"moa-lit {manifest.moa_lit_version}; {made_of}; {len(names)} targets; "
             f"{len(manifest.layout.genes)} g-* and {len(manifest.layout.cells)} c-* columns.", ""]
    lines += scores_section(scores)

    lines += ["", "## Learning curves", ""]
    if inputs.curves:
        _save(plots.learning_curves(inputs.curves), out / run_files.LEARNING_CURVES_PNG)
        lines += ["Training loss (dashed; on smoothed labels, with dropout) and validation log loss (solid; the "
                  "fold's new-drug rows, or its treated rows where it has none) by epoch. The star is the epoch "
                  "whose checkpoint predicts: a star well before the last epoch means the later epochs overfit.", "",
                  f"![learning curves]({run_files.LEARNING_CURVES_PNG})"]
    else:
        lines += [f"No per-epoch logs in `{run_files.LOGS}/` (a run with `logger=null`, or a blend)."]

    # The per-target loss is scores.json's, so the figure and the table agree with the scores.
    loss = np.array([scores["per_target"][n] for n in names])
    positives = inputs.labels.sum(axis=0)
    fig, worst = plots.per_target_loss(names, loss, positives, n_rows)
    _save(fig, out / run_files.PER_TARGET_PNG)
    prior = plots.prior_loss(positives, n_rows)
    lines += ["", "## Per-target loss", "",
              "Each point is a target: its OOF log loss against how many OOF rows are positive for it. The dashed "
              "line is the loss of predicting the target's own rate everywhere; points above it are worse than "
              "that prior. Rare targets are cheap, frequent ones dominate the mean.", "",
              f"![per-target loss]({run_files.PER_TARGET_PNG})", "", "Worst targets:", ""]
    lines += _table(
        ["target", "OOF log loss", "positives", "in-sample prior loss"],
        [[names[j], fmt(loss[j]), int(positives[j]), fmt(prior[j])] for j in worst],
    )

    calibration = plots.reliability_table(inputs.oof[treated], inputs.labels[treated])
    _save(plots.reliability(calibration, int(treated.sum())), out / run_files.RELIABILITY_PNG)
    mean_pred = float(inputs.oof[treated].mean())
    rate = float(inputs.labels[treated].mean())
    ece = float((calibration["count"] * (calibration["mean_prediction"] - calibration["observed_rate"]).abs()).sum()
                / calibration["count"].sum())

    lines += ["", "## Calibration", "",
              f"Treated OOF rows only (controls are predicted exactly 0). Mean prediction {mean_pred:.5f} against "
              f"an observed positive rate of {rate:.5f}; count-weighted mean |prediction - observed rate| over the "
              f"bins: {ece:.5f}. Points above the diagonal are under-confident bins, below it over-confident.", "",
              f"![reliability]({run_files.RELIABILITY_PNG})", ""]
    lines += _table(
        ["predictions in", "count", "mean prediction", "observed rate", "positives"],
        [[f"[{r.low:.2g}, {r.high:.2g})", int(r.count), f"{r.mean_prediction:.2e}", f"{r.observed_rate:.2e}",
          int(r.positives)] for r in calibration.itertuples()],
    )

    lines += ["", "## Data", ""]
    data = scores.get("data") or {}
    lines += _table(["fingerprint", "value"], _fingerprint_rows(data)) if data else ["No fingerprint in scores.json."]

    lines += ["", "## Config", ""]
    overrides, config_text = run.text(run_files.HYDRA_OVERRIDES), run.text(run_files.CONFIG)
    if overrides:
        lines += ["Command-line overrides:", "", "```yaml", overrides.rstrip(), "```", ""]
    if config_text:
        lines += ["The composed config (`.hydra/config.yaml`):", "", "```yaml", config_text.rstrip(), "```"]
    else:
        lines += [f"`{run_files.CONFIG}` not found in the run folder."]
    path = out / run_files.REPORT_MD
    run_files.write_text("\n".join(lines) + "\n", path)
    return path
