"""experiment=ensemble and final_model=refit|both: nested blend weights never
see the fold they score, the ensemble's OOF is that nested blend of its
members' OOF, refitted models train on every row for the chosen epochs, and
predict on either kind of run gives its submission."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import compose_train
from moa_lit.blend import nested_blend, nested_weights, optimise_weights
from moa_lit.run_checks import train_batches_per_epoch
from moa_lit.runs import files
from moa_lit.runs.run_dir import RunDir
from moa_lit.training.final_model import RunModel
from moa_lit.training.refit import refit_epochs


def _truth_and_members(seed=0, n=600, t=8):
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, t)) < 0.08).astype(float)
    good = np.clip(np.where(truth > 0, 0.6, 0.05) + rng.normal(0, 0.05, truth.shape), 0.001, 0.999)
    weak = np.clip(np.where(truth > 0, 0.5, 0.07) + rng.normal(0, 0.08, truth.shape), 0.001, 0.999)
    return truth, [good, weak], np.arange(n) % 3


def test_nested_weights_never_see_the_scored_fold():
    truth, members, folds = _truth_and_members()
    weights = nested_weights(truth, members, folds, [0, 1, 2])
    # Planted leakage: the weak member becomes perfect on fold 0's rows only.
    leaky = members[1].copy()
    leaky[folds == 0] = np.clip(truth[folds == 0], 0.001, 0.999)
    planted = nested_weights(truth, [members[0], leaky], folds, [0, 1, 2])
    np.testing.assert_array_equal(planted[0], weights[0])  # fold 0's weights never saw fold 0
    assert planted[1][1] > weights[1][1] + 0.5 and planted[2][1] > weights[2][1] + 0.5  # the others did
    # Weights that saw fold 0 (fitted on every row) would have moved for fold 0 too.
    assert optimise_weights(truth, [members[0], leaky])[1] > optimise_weights(truth, members)[1] + 0.5
    blended = nested_blend([members[0], leaky], folds, planted)
    rows = folds == 0
    np.testing.assert_allclose(blended[rows], planted[0][0] * members[0][rows] + planted[0][1] * leaky[rows])


def test_refit_epochs_is_the_median_best_epoch_count_scaled():
    assert refit_epochs([3, 5, 9], 1.0) == 6  # checkpoint epochs count from 0
    assert refit_epochs([3, 5, 9, None], 1.5) == 9
    assert refit_epochs([0], 0.1) == 1


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    """One tiny ensemble (MLP + linear, 2 folds) whose members also refit (final_model=both)."""
    from moa_lit.train import train

    tmp = tmp_path_factory.mktemp("ensemble")
    out = tmp / "run"
    cfg = compose_train([
        "experiment=ensemble", "data.n_samples=300", "data.n_scored=20", f"data.dir={tmp / 'data'}",
        "cv.n_folds=2", "trainer.max_epochs=2", "ensemble.models.mlp.net.hidden_size=32", "loader.batch_size=64",
        "callbacks.progress_bar.refresh_rate=0", "allow_worse_than_prior=true", "num_threads=1",
        "final_model=both", "refit.seeds=[0,1]", f"paths.output_dir={out}",
    ])
    train(cfg)
    data_dir = next((tmp / "data").glob("synthetic-*"))
    return out, data_dir


def _table(path):
    return pd.read_csv(path, dtype={"sig_id": str})


def test_ensemble_oof_is_the_nested_blend_of_its_members(ensemble_run):
    out, _ = ensemble_run
    scores = json.loads((out / "scores.json").read_text())
    names = list(scores["ensemble"]["weights"])
    assert names == ["mlp", "linear"]
    oof = _table(out / "oof.csv")
    members = [_table(out / "members" / n / "oof.csv") for n in names]
    folds = _table(out / "folds.csv").set_index("sig_id").loc[oof["sig_id"], "fold"].to_numpy()
    targets = list(oof.columns[1:])
    preds = [m[targets].to_numpy() for m in members]
    per_fold = {int(k): np.array([w[n] for n in names]) for k, w in scores["ensemble"]["weights_per_fold"].items()}
    np.testing.assert_allclose(oof[targets].to_numpy(), nested_blend(preds, folds, per_fold), atol=1e-6)
    # The recorded weights are the nested ones, recomputed from the members' OOF.
    labels = RunDir(out).labels(targets)
    truth = labels.targets[labels.rows_of(oof["sig_id"], out)]
    again = nested_weights(truth, preds, folds, [0, 1])
    for k in (0, 1):
        np.testing.assert_allclose(again[k], per_fold[k], atol=1e-6)
    assert scores["oof_logloss"] == pytest.approx(
        RunDir(out).read(files.SCORES)["oof_logloss"]
    ) and set(scores["ensemble"]["members"]) == set(names)
    manifest = RunDir(out).manifest()
    assert [m.run for m in manifest.members] == ["members/mlp", "members/linear"]  # relative: the folder can move


def test_refit_trains_on_every_row_for_the_chosen_epochs(ensemble_run):
    out, _ = ensemble_run
    member = RunDir(out / "members" / "mlp")
    scores = member.read(files.SCORES)
    epochs = refit_epochs([f["best_epoch"] for f in scores["fold_summaries"]], 1.0)
    n_treated = int((~member.labels(member.manifest().target_names).is_control).sum())
    assert scores["final_model"]["refit"] == {"epochs": epochs, "seeds": [0, 1], "n_train_rows": n_treated}
    for seed in (0, 1):
        refit = member.refit(seed)
        assert refit.read_info()["n_train_rows"] == n_treated and refit.read_info()["epochs"] == epochs
        state = torch.load(refit.best_checkpoint, map_location="cpu", weights_only=True)
        assert state["global_step"] == epochs * train_batches_per_epoch(n_treated, 64)  # every row, every epoch


def test_predict_matches_the_submission_of_ensemble_and_refit_runs(ensemble_run):
    from moa_lit.data.reader import read_features

    out, data_dir = ensemble_run
    member = RunDir(out / "members" / "mlp")
    features = read_features(data_dir / "test_features.csv", member.manifest().layout)
    for run in (RunDir(out), member):
        predicted = RunModel.load(run.path).predict_proba(features)
        submission = _table(run.path / "submission.csv")
        assert list(predicted.columns) == list(submission.columns)
        np.testing.assert_allclose(predicted.iloc[:, 1:].to_numpy(), submission.iloc[:, 1:].to_numpy(), atol=2e-6)
    # final_model=both is the mean of the fold models' and the refitted models' averages.
    folds = RunModel.load(member.path, final_model="fold_average").predict_proba(features)
    refit = RunModel.load(member.path, final_model="refit").predict_proba(features)
    assert np.abs(folds.iloc[:, 1:].to_numpy() - refit.iloc[:, 1:].to_numpy()).max() > 1e-4  # two different models
    both = (folds.iloc[:, 1:].to_numpy() + refit.iloc[:, 1:].to_numpy()) / 2
    np.testing.assert_allclose(both, _table(member.path / "submission.csv").iloc[:, 1:].to_numpy(), atol=2e-6)
