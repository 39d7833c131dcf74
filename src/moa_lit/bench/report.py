"""How long the run report takes at full size: a fabricated run folder with
23,814 OOF rows x 206 targets (16,844 positives, 1,866 controls, as in the
real labels), 5 folds x 1 seed of 25-epoch logs; prints seconds per phase.

    PYTHONPATH=src python benchmarks/bench_report.py [--seeds 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from moa_lit.bench import one_line_errors, refuse_counts_below_one


def fabricate(run_dir: Path, n_rows: int, n_targets: int, n_positives: int, n_controls: int, seeds: list[int]) -> None:
    from moa_lit import schema
    from moa_lit.runs.manifest import RunManifest
    from moa_lit.runs.run_dir import RunDir, labels_table
    from moa_lit.scoring.scores import score_run

    rng = np.random.default_rng(0)
    names = [f"target_{j}_inhibitor" for j in range(n_targets)]
    ids = np.array([f"id_{i:09x}" for i in range(n_rows)])
    is_control = np.zeros(n_rows, dtype=bool)
    is_control[rng.choice(n_rows, n_controls, replace=False)] = True
    targets = np.zeros((n_rows, n_targets))
    treated = np.flatnonzero(~is_control)
    weights = rng.pareto(1.0, n_targets) + 1  # a few frequent targets, many rare ones
    cols = rng.choice(n_targets, n_positives, p=weights / weights.sum())
    targets[rng.choice(treated, n_positives), cols] = 1
    oof = np.clip(targets * rng.uniform(0.05, 0.6, targets.shape) + rng.lognormal(-7, 1.5, targets.shape), 0, 1)
    oof[is_control] = 0
    folds = rng.integers(0, 5, n_rows)

    run = RunDir(run_dir)
    run.write_manifest(RunManifest.new(schema.FeatureLayout.kaggle(), names, seeds, list(range(5))))
    frame = pd.DataFrame(oof, columns=names)
    frame.insert(0, schema.ID, ids)
    run.write_predictions(frame, None)
    cp_type = np.where(is_control, schema.CONTROL, schema.TREATED)
    run.write_labels(labels_table(ids, cp_type, targets, names))
    scores = score_run(targets, oof, folds, is_control, list(range(5)), names)
    scores["seeds"] = seeds
    scores["data"] = {"rows": n_rows, "n_scored": n_targets}
    run.write_scores(scores)
    for seed in seeds:
        for fold in range(5):
            epochs = np.arange(25)
            val = 0.02 - 0.004 * (1 - np.exp(-epochs / 5)) + 0.0001 * np.maximum(epochs - 15, 0)
            log = pd.concat([
                pd.DataFrame({"epoch": epochs, "step": epochs * 150, "train_loss": np.nan, "val_logloss": val}),
                pd.DataFrame({"epoch": epochs, "step": epochs * 150, "train_loss": val * 0.8, "val_logloss": np.nan}),
            ]).sort_values(["epoch", "train_loss"])
            path = run.metrics_file(seed, fold)
            path.parent.mkdir(parents=True, exist_ok=True)
            log.to_csv(path, index=False)
            run.fold(seed, fold).write_info({"best_epoch": int(np.argmin(val))})


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write the fabricated run here (to look at the report) instead of a temporary folder")
    args = parser.parse_args()
    refuse_counts_below_one(parser, args, "--seeds")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.keep or Path(tmp) / "run"
        fabricate(run_dir, 23814, 206, 16844, 1866, list(range(args.seeds)))
        t0 = time.perf_counter()
        from moa_lit.report import build_report  # matplotlib's import is part of the cost in train.py
        from moa_lit.report.build import read_report_inputs

        t1 = time.perf_counter()
        read_report_inputs(run_dir)
        t2 = time.perf_counter()
        build_report(run_dir)
        t3 = time.perf_counter()
        print(f"report at 23,814 x 206, {args.seeds} seed(s) x 5 folds: import {t1 - t0:.2f} s, "
              f"reading inputs {t2 - t1:.2f} s, whole build_report {t3 - t2:.2f} s")


if __name__ == "__main__":
    main()
