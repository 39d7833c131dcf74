"""The real command line, end to end, on tiny synthetic data."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, tiny_run_overrides
from moa_lit.scoring.metric import mean_logloss


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    run_dir = tmp / "run"
    proc = run_cli("moa_lit.train", [*tiny_run_overrides(tmp, n_samples=1200, epochs=4, n_scored=24), "model.net.hidden_size=128", f"hydra.run.dir={run_dir}"], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data_dirs = [d for d in (tmp / "data").iterdir() if d.is_dir() and not d.name.startswith(".")]
    assert len(data_dirs) == 1
    return run_dir, data_dirs[0], proc


def test_run_writes_every_output(tiny_run):
    run_dir, _, proc = tiny_run
    for name in ["folds.csv", "oof.csv", "scores.json", "submission.csv", ".hydra/config.yaml"]:
        assert (run_dir / name).is_file(), name
    for fold in (0, 1):
        fold_dir = run_dir / "models" / "seed0" / f"fold{fold}"
        for name in ["best.ckpt", "preprocessor.skops", "fold.json"]:
            assert (fold_dir / name).is_file(), fold_dir / name
        assert (run_dir / "logs" / f"seed0_fold{fold}" / "metrics.csv").is_file()
    assert "OOF log loss" in proc.stdout
    assert str(run_dir) in proc.stdout


def test_oof_scores_are_true_and_beat_the_prior(tiny_run):
    run_dir, data_dir, _ = tiny_run
    scores = json.loads((run_dir / "scores.json").read_text())
    oof = pd.read_csv(run_dir / "oof.csv")
    truth = pd.read_csv(data_dir / "train_targets_scored.csv").set_index("sig_id").loc[oof["sig_id"]]
    assert list(oof.columns[1:]) == list(truth.columns)
    p = oof.drop(columns="sig_id").to_numpy()
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert mean_logloss(truth.to_numpy(), p) == pytest.approx(scores["oof_logloss"], rel=1e-5)

    features = pd.read_csv(data_dir / "train_features.csv").set_index("sig_id").loc[oof["sig_id"]]
    control = (features["cp_type"] == "ctl_vehicle").to_numpy()
    assert control.any() and (p[control] == 0).all()
    treated = mean_logloss(truth.to_numpy()[~control], p[~control])
    assert treated == pytest.approx(scores["oof_logloss_treated"], rel=1e-5)
    # the model learned something: better than the fold-wise prior on the same rows
    assert scores["oof_logloss_treated"] < scores["prior_logloss_treated"]
    assert scores["oof_logloss"] < scores["prior_logloss"]
    assert set(scores["per_fold"]) == {"0", "1"} and len(scores["per_target"]) == truth.shape[1]
    assert scores["wall_time_s"] > 0 and "training" in scores["timings_s"]
    # the data fingerprint identifies the source files by content
    import hashlib

    source = data_dir / "train_features.csv"
    assert scores["data"]["train_features.csv"]["sha1"] == hashlib.sha1(source.read_bytes()).hexdigest()
    assert scores["data"]["rows"] == len(features)


def test_folds_and_submission_layout(tiny_run):
    run_dir, data_dir, _ = tiny_run
    folds = pd.read_csv(run_dir / "folds.csv")
    train = pd.read_csv(data_dir / "train_features.csv", usecols=["sig_id"])
    assert list(folds["sig_id"]) == list(train["sig_id"])
    assert set(folds["fold"]) == {0, 1}
    assert folds.groupby("drug_id")["fold"].nunique().loc[lambda s: s.index.map(folds["drug_id"].value_counts()) <= 18].max() == 1

    sample = pd.read_csv(data_dir / "sample_submission.csv")
    sub = pd.read_csv(run_dir / "submission.csv")
    assert list(sub.columns) == list(sample.columns)
    assert list(sub["sig_id"]) == list(sample["sig_id"])
    values = sub.drop(columns="sig_id").to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    test = pd.read_csv(data_dir / "test_features.csv", usecols=["sig_id", "cp_type"])
    assert (values[(test["cp_type"] == "ctl_vehicle").to_numpy()] == 0).all()


def test_gpu_trainer_without_gpu_stops_with_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: trainer=gpu is valid here")
    proc = run_cli("moa_lit.train", ["trainer=gpu", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "no CUDA GPU is available" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # stopped before any work


@pytest.mark.parametrize(
    "override, message",
    [
        ("data=kaggle", "data=kaggle needs data.dir="),
        ("cv.folds=[0,7]", "cv.folds="),
        ("seeds=[]", "seeds=[]"),
    ],
)
def test_bad_settings_give_one_clear_line(tmp_path, override, message):
    proc = run_cli("moa_lit.train", [override, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_kaggle_folder_names_it(tmp_path):
    missing = tmp_path / "no-such-folder"
    proc = run_cli("moa_lit.train", ["data=kaggle", f"data.dir={missing}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr
