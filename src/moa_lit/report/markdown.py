"""report.md: the scores table (from scores.json, so the numbers agree), the
three figures with what to read in each, the data fingerprint and the config."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from moa_lit.runs import files as run_files
from moa_lit.report.inputs import ReportInputs
from moa_lit.scoring.scores import NEW_DRUGS, headline_scores

DIGITS = 5  # scores are shown as f"{value:.5f}"


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


def build_markdown(inputs: ReportInputs, worst: np.ndarray, positives: np.ndarray, prior: np.ndarray,
                   calibration: pd.DataFrame) -> str:
    scores, names = inputs.scores, inputs.manifest.target_names
    per_target = np.array([scores["per_target"][n] for n in names])
    treated = ~inputs.is_control
    mean_pred = float(inputs.oof[treated].mean())
    rate = float(inputs.labels[treated].mean())
    ece = float((calibration["count"] * (calibration["mean_prediction"] - calibration["observed_rate"]).abs()).sum()
                / calibration["count"].sum())

    manifest = inputs.manifest
    made_of = (
        f"a blend of {len(manifest.members)} runs over {len(manifest.folds)} fold(s)"
        if manifest.is_blend
        else f"{len(manifest.seeds)} seed(s) x {len(manifest.folds)} fold(s)"
    )
    lines = [f"# Run report: {inputs.run_dir.name}", "",
             f"moa-lit {manifest.moa_lit_version}; {made_of}; {len(names)} targets; "
             f"{len(inputs.manifest.layout.genes)} g-* and {len(inputs.manifest.layout.cells)} c-* columns.", ""]
    lines += scores_section(scores)

    lines += ["", "## Learning curves", ""]
    if inputs.curves:
        lines += ["Training loss (dashed; on smoothed labels, with dropout) and validation log loss (solid; the "
                  "fold's new-drug rows, or its treated rows where it has none) by epoch. The star is the epoch "
                  "whose checkpoint predicts: a star well before the last epoch means the later epochs overfit.", "",
                  f"![learning curves]({run_files.LEARNING_CURVES_PNG})"]
    else:
        lines += [f"No per-epoch logs in `{run_files.LOGS}/` (a run with `logger=null`, or a blend)."]

    lines += ["", "## Per-target loss", "",
              "Each point is a target: its OOF log loss against how many OOF rows are positive for it. The dashed "
              "line is the loss of predicting the target's own rate everywhere; points above it are worse than "
              "that prior. Rare targets are cheap, frequent ones dominate the mean.", "",
              f"![per-target loss]({run_files.PER_TARGET_PNG})", "", "Worst targets:", ""]
    lines += _table(
        ["target", "OOF log loss", "positives", "in-sample prior loss"],
        [[names[j], fmt(per_target[j]), int(positives[j]), fmt(prior[j])] for j in worst],
    )

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
    if inputs.overrides:
        lines += ["Command-line overrides:", "", "```yaml", inputs.overrides.rstrip(), "```", ""]
    if inputs.config_text:
        lines += ["The composed config (`.hydra/config.yaml`):", "", "```yaml", inputs.config_text.rstrip(), "```"]
    else:
        lines += [f"`{run_files.CONFIG}` not found in the run folder."]
    return "\n".join(lines) + "\n"
