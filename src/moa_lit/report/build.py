"""Writes ``<run>/report/``: three PNG figures and report.md tying them to the
run's scores, data fingerprint and config. Built only from files in the run
folder, so ``python -m moa_lit.report`` can rebuild it anywhere."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from moa_lit.runs import files as run_files
from moa_lit.runs.run_dir import RunDir
from moa_lit.report import plots
from moa_lit.report.inputs import read_report_inputs
from moa_lit.report.markdown import build_markdown


def build_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    inputs = read_report_inputs(run_dir)
    out = RunDir(run_dir).report_dir
    out.mkdir(exist_ok=True)
    names = inputs.manifest.target_names
    n_rows = len(inputs.oof)

    if inputs.curves:
        _save(plots.learning_curves(inputs.curves), out / run_files.LEARNING_CURVES_PNG)

    # The per-target loss is scores.json's, so the figure and the table agree with the scores.
    loss = np.array([inputs.scores["per_target"][n] for n in names])
    positives = inputs.labels.sum(axis=0)
    fig, worst = plots.per_target_loss(names, loss, positives, n_rows)
    _save(fig, out / run_files.PER_TARGET_PNG)

    treated = ~inputs.is_control
    calibration = plots.reliability_table(inputs.oof[treated], inputs.labels[treated])
    _save(plots.reliability(calibration, int(treated.sum())), out / run_files.RELIABILITY_PNG)

    text = build_markdown(inputs, worst, positives, plots.prior_loss(positives, n_rows), calibration)
    path = out / run_files.REPORT_MD
    run_files.write_text(text, path)
    return path


def _save(fig, path: Path) -> None:
    try:
        run_files.save_figure(fig, path)
    finally:
        plt.close(fig)
