"""A fold's features are fitted once and shared by every training seed
(issue 15, point 2): with seeds=[0,1,2] over 2 folds the pipeline is fitted
twice, not six times, and every seed of a fold predicts from the same features."""

from __future__ import annotations

import json

from conftest import compose_train, tiny_run_overrides
from moa_lit.training import datamodule
from moa_lit.train import train


def test_features_are_fitted_once_per_fold_whatever_the_seeds(tmp_path, monkeypatch):
    fitted = []
    real_fit = datamodule.fit_transform_features

    def counting_fit(pipeline, rows, *controls):
        fitted.append(len(rows))
        return real_fit(pipeline, rows, *controls)

    monkeypatch.setattr(datamodule, "fit_transform_features", counting_fit)
    run_dir = tmp_path / "run"
    cfg = compose_train([*tiny_run_overrides(tmp_path, n_samples=300, epochs=1, n_scored=20), "num_threads=1",
                         "seeds=[0,1,2]", "features.pca_genes=5", "features.factor_analysis_cells=2",
                         f"paths.output_dir={run_dir}"])
    train(cfg)
    assert len(fitted) == 2  # one fit per fold, not per (seed, fold)
    scores = json.loads((run_dir / "scores.json").read_text())
    assert sorted((s["seed"], s["fold"]) for s in scores["fold_summaries"]) == [(s, f) for s in range(3) for f in range(2)]
    # Every seed of a fold saved the same fitted pipeline (skops.io archives
    # record Python object ids, so the same pipeline is compared by what it computes).
    import numpy as np
    import pandas as pd

    from moa_lit.runs.run_dir import RunDir
    from moa_lit.training.fold_predictor import _load_preprocessor

    rows = pd.read_csv(next((tmp_path / "data").glob("synthetic-*")) / "train_features.csv")
    for fold in range(2):
        saved = [_load_preprocessor(RunDir(run_dir).fold(seed, fold)).transform(rows) for seed in range(3)]
        assert all(np.array_equal(saved[0], other) for other in saved[1:])
