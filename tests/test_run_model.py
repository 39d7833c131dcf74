"""The final-model object: ``moa_lit.load_run(run).predict_proba(test_features)``
gives the run's submission.csv (same ids, columns and order; values to the
7 significant digits the CSV keeps) for every kind of run: a plain run, refit
and both, a merge of cv.folds parts, a blend of two runs and an ensemble.

Every run here is trained on a copy of tiny synthetic data whose target names
hold ``|`` and ``,``, so the names also go through train -> merge/blend/report
(labels.csv once joined them with ``|``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import moa_lit
from conftest import compose_train
from moa_lit import schema
from moa_lit.errors import MoAError
from moa_lit.runs.run_dir import RunDir

ODD_NAMES = {0: "a|b_inhibitor", 1: "c,d_agonist"}  # target column -> its new name


@pytest.fixture(scope="module")
def odd_data(tmp_path_factory):
    """Tiny synthetic data in the Kaggle layout, two targets renamed."""
    from moa_lit.data.sources import load_synthetic

    tmp = tmp_path_factory.mktemp("run_model")
    load_synthetic(str(tmp / "synthetic"), n_samples=300, n_scored=12, n_nonscored=8)
    source = next((tmp / "synthetic").glob("synthetic-*"))
    folder = tmp / "odd"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".moa_cache", "manifest.json", "benchmark_only"))
    for name in (schema.TRAIN_TARGETS_SCORED, schema.SAMPLE_SUBMISSION):
        frame = pd.read_csv(folder / name, dtype={schema.ID: str})
        frame.columns = [ODD_NAMES.get(i - 1, c) for i, c in enumerate(frame.columns)]
        frame.to_csv(folder / name, index=False)
    return tmp, folder


def _train(tmp, data, name, *extra):
    from moa_lit.train import train

    out = tmp / name
    train(compose_train([
        "data=kaggle", f"data.dir={data}", "cv.n_folds=2", "trainer.max_epochs=1", "model.net.hidden_size=32",
        "loader.batch_size=64", "callbacks.progress_bar.refresh_rate=0", "allow_worse_than_prior=true",
        "num_threads=1", f"paths.output_dir={out}", *extra,
    ]))
    return out


@pytest.fixture(scope="module")
def runs(odd_data):
    from moa_lit.blend import blend
    from moa_lit.merge import merge_runs

    tmp, data = odd_data
    made = {
        "plain": _train(tmp, data, "plain", "seeds=[0,1]"),
        "refit": _train(tmp, data, "refit", "final_model=refit", "refit.seeds=[0,1]"),
        "both": _train(tmp, data, "both", "final_model=both", "refit.seeds=[0]"),
        "ensemble": _train(tmp, data, "ensemble", "experiment=ensemble", "ensemble.models.mlp.net.hidden_size=32"),
        "calibrated": _train(tmp, data, "calibrated", "calibration.method=affine", "calibration.strength=1", "predict.clip=[0.001,0.999]"),
    }
    parts = [_train(tmp, data, f"part{k}", f"cv.folds=[{k}]", "seeds=[0,1]") for k in (0, 1)]
    made["merged"] = tmp / "merged"
    merge_runs(parts, made["merged"])
    made["blended"] = tmp / "blended"
    blend([made["plain"], made["refit"]], made["blended"])
    return made, data


@pytest.mark.parametrize("kind", ["plain", "refit", "both", "merged", "blended", "ensemble", "calibrated"])
def test_load_run_predicts_the_runs_submission(runs, kind):
    made, data = runs
    run = made[kind]
    probabilities = moa_lit.load_run(run).predict_proba(pd.read_csv(data / schema.TEST_FEATURES))
    submission = pd.read_csv(run / "submission.csv", dtype={schema.ID: str})
    assert list(probabilities.columns) == list(submission.columns)
    assert ODD_NAMES[0] in probabilities.columns and ODD_NAMES[1] in probabilities.columns
    assert list(probabilities[schema.ID]) == list(submission[schema.ID])
    np.testing.assert_allclose(probabilities.iloc[:, 1:].to_numpy(), submission.iloc[:, 1:].to_numpy(), rtol=0, atol=1e-7)


def test_a_calibrated_run_predicts_calibrated_probabilities_everywhere(runs, tmp_path, monkeypatch):
    """predict and load_run apply calibration.json as training did (submission.csv);
    without it the probabilities differ; controls stay 0 and the clip holds."""
    from dataclasses import replace

    from moa_lit.merge import merge_runs
    from moa_lit.predict import predict
    from omegaconf import OmegaConf

    made, data = runs
    run, test = made["calibrated"], pd.read_csv(data / schema.TEST_FEATURES)
    submission = pd.read_csv(run / "submission.csv", dtype={schema.ID: str}).iloc[:, 1:].to_numpy()
    model = moa_lit.load_run(run)
    predicted = predict(OmegaConf.create({"run_dir": str(run), "input": str(data / schema.TEST_FEATURES),
                                          "output": str(tmp_path / "p.csv"), "top_k": 0, "num_threads": 1}))
    np.testing.assert_allclose(pd.read_csv(predicted).iloc[:, 1:].to_numpy(), submission, rtol=0, atol=1e-7)
    uncalibrated = replace(model, calibration=None).predict_proba(test).iloc[:, 1:].to_numpy()
    assert np.abs(uncalibrated - submission).max() > 1e-3
    controls = (test[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    assert np.all(submission[controls] == 0) and submission[~controls].min() >= 0.001 and submission.max() <= 0.999
    scores = json.loads((run / "scores.json").read_text())
    assert scores["oof_logloss_new_drugs"] != scores["oof_logloss_new_drugs_uncalibrated"]
    with pytest.raises(MoAError, match="calibration.json, a calibrated run of every fold; expected runs of cv.folds parts"):
        merge_runs([run], tmp_path / "merged")


def test_an_uncalibrated_run_is_unchanged(runs):
    """calibration.method=none (the default): no calibration.json, no uncalibrated scores."""
    made, _ = runs
    assert not (made["plain"] / "calibration.json").exists() and moa_lit.load_run(made["plain"]).calibration is None
    assert not [k for k in json.loads((made["plain"] / "scores.json").read_text()) if k.endswith("_uncalibrated")]


def test_the_merged_run_scores_as_one_run_over_its_folds(runs):
    """The labels of targets named with | and , are read back whole: the merged
    run's scores are the plain run's (the same two seeds and folds)."""
    made, _ = runs
    plain, merged = (json.loads((made[k] / "scores.json").read_text()) for k in ("plain", "merged"))
    for key in ("oof_logloss", "oof_logloss_treated", "prior_logloss"):
        assert merged[key] == pytest.approx(plain[key], rel=1e-6), key
    labels = pd.read_csv(made["merged"] / "labels.csv", dtype=str, keep_default_na=False)["positives"]
    assert labels.map(lambda cell: ODD_NAMES[0] in json.loads(cell)).any()


def test_blend_and_report_read_the_odd_targets_whole(runs):
    from moa_lit.report import build_report

    made, data = runs
    truth = pd.read_csv(data / schema.TRAIN_TARGETS_SCORED, dtype={schema.ID: str}).set_index(schema.ID)
    labels = RunDir(made["blended"]).labels(list(truth.columns))
    np.testing.assert_array_equal(labels.targets, truth.loc[labels.ids].to_numpy(dtype=float))
    shutil.rmtree(made["blended"] / "report")
    build_report(made["blended"])
    report = (made["blended"] / "report" / "report.md").read_text()
    worst = [line for line in report.splitlines() if line.startswith(("| a\\|b", "| c,d"))]
    assert worst and all(line.count(" | ") == 3 for line in worst)  # the name is one cell of four


def test_predict_proba_refuses_features_of_another_layout(runs):
    made, data = runs
    features = pd.read_csv(data / schema.TEST_FEATURES).drop(columns="g-0")
    with pytest.raises(MoAError, match=r"features: header does not match the expected columns: missing 1 \('g-0'\)"):
        moa_lit.load_run(made["plain"]).predict_proba(features)
