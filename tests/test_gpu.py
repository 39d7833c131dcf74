"""The GPU path end to end, on a real CUDA GPU: ``pytest -m gpu``. Skipped
where CUDA is absent (CI has no GPU; the CPU-side proofs are
test_autocast_ops.py and test_devices.py).

MOA_GPU_TESTS_ON_CPU=1 runs the same tests with trainer=cpu and CPU mixed
precision, to check the tests themselves on a machine without a GPU."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_cli, tiny_run_overrides
from moa_lit.runs import files as run_files
from moa_lit.scoring.metric import mean_logloss

ON_CPU = os.environ.get("MOA_GPU_TESTS_ON_CPU") == "1"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (ON_CPU or torch.cuda.is_available()), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]
TRAINER = "trainer=cpu" if ON_CPU else "trainer=gpu"
PRECISIONS = ["bf16-mixed"] if ON_CPU else ["16-mixed", "bf16-mixed"]
DEVICE = "cpu" if ON_CPU else "cuda"


def gpu_run(tmp: Path, run_dir: Path, precision: str, extra=(), n_samples=1200, epochs=4) -> list[str]:
    return [
        *tiny_run_overrides(tmp, n_samples=n_samples, epochs=epochs, n_scored=24),
        "model.net.hidden_size=128",
        TRAINER,
        f"trainer.precision={precision}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def check_run(run_dir: Path, n_folds: int) -> dict:
    for name in ["folds.csv", "oof.csv", "labels.csv", "scores.json", "submission.csv", "run.json",
                 "settings.yaml", ".hydra/config.yaml", "report/report.md"]:
        assert (run_dir / name).is_file(), name
    for fold in range(n_folds):
        fold_dir = run_files.fold_dir(run_dir, 0, fold)
        for name in ["best.ckpt", "preprocessor.skops", "fold.json", "predictions.npz"]:
            assert (fold_dir / name).is_file(), fold_dir / name
        info = json.loads((fold_dir / "fold.json").read_text())
        assert info["device"].startswith(DEVICE)
        if not ON_CPU:
            assert info["peak_gpu_memory_mb"] > 0
        assert (run_dir / "logs" / f"seed0_fold{fold}" / "metrics.csv").is_file()
    scores = json.loads((run_dir / "scores.json").read_text())
    if not ON_CPU:
        assert scores["peak_gpu_memory_mb"] > 0 and scores["device"] == torch.cuda.get_device_name(0)
    oof = pd.read_csv(run_dir / "oof.csv").drop(columns="sig_id").to_numpy()
    assert np.isfinite(oof).all() and (oof >= 0).all() and (oof <= 1).all()
    return scores


@pytest.fixture(scope="module")
def gpu_runs(tmp_path_factory):
    """A 2-fold run at each precision (also used by the predict tests)."""
    tmp = tmp_path_factory.mktemp("gpu")
    runs = {}
    for precision in PRECISIONS:
        run_dir = tmp / f"run-{precision}"
        proc = run_cli("moa_lit.train", gpu_run(tmp, run_dir, precision), cwd=tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[precision] = run_dir
    return tmp, runs


@pytest.mark.parametrize("precision", PRECISIONS)
def test_debug_run_on_the_gpu(precision, tmp_path):
    run_dir = tmp_path / "run"
    args = [TRAINER, f"trainer.precision={precision}", "debug=fast", "data.n_samples=600", f"data.dir={tmp_path / 'data'}",
            "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run_dir}"]
    proc = run_cli("moa_lit.train", args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_run(run_dir, n_folds=2)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_two_fold_run_beats_the_prior(gpu_runs, precision):
    _, runs = gpu_runs
    scores = check_run(runs[precision], n_folds=2)
    assert scores["oof_logloss_treated"] < scores["prior_logloss_treated"]
    assert scores["oof_logloss"] < scores["prior_logloss"]


def _predict(run_dir: Path, tmp: Path, device: str, env_extra: dict | None = None) -> pd.DataFrame:
    data_dir = next(d for d in (tmp / "data").iterdir() if d.is_dir() and not d.name.startswith("."))
    out = tmp / f"pred-{run_dir.name}-{device}.csv"
    env = dict(os.environ, **(env_extra or {}))
    old = os.environ.copy()
    os.environ.update(env)
    try:
        proc = run_cli("moa_lit.predict", [f"run_dir={run_dir}", f"input={data_dir / 'test_features.csv'}",
                                           f"output={out}", f"device={device}"], cwd=tmp)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pd.read_csv(out)


@pytest.mark.parametrize("where", ["gpu", "cpu-only machine"])
def test_predict_on_a_gpu_trained_run_equals_its_submission(gpu_runs, where):
    tmp, runs = gpu_runs
    run_dir = runs[PRECISIONS[0]]
    submission = pd.read_csv(run_dir / "submission.csv")
    if where == "gpu":
        predicted = _predict(run_dir, tmp, DEVICE)
    else:
        # No GPU visible at all: the checkpoints must load onto the CPU.
        predicted = _predict(run_dir, tmp, "auto", {"CUDA_VISIBLE_DEVICES": ""})
    assert list(predicted.columns) == list(submission.columns)
    assert list(predicted["sig_id"]) == list(submission["sig_id"])
    np.testing.assert_allclose(predicted.drop(columns="sig_id"), submission.drop(columns="sig_id"), rtol=0, atol=2e-6)


def test_killed_gpu_run_resumes_to_the_uninterrupted_result(tmp_path):
    from test_resume import kill_in_second_fold

    precision = PRECISIONS[0]
    extra = ["trainer.deterministic=true", "num_threads=1"]
    ref_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    ref = run_cli("moa_lit.train", gpu_run(tmp_path, ref_dir, precision, extra, n_samples=1200, epochs=8), cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]

    args = gpu_run(tmp_path, killed_dir, precision, extra, n_samples=1200, epochs=8)
    fold1_last = run_files.fold_dir(killed_dir, 0, 1) / run_files.LAST_CHECKPOINT
    kill_in_second_fold(args, killed_dir, tmp_path)
    assert not (run_files.fold_dir(killed_dir, 0, 1) / run_files.FOLD_PREDICTIONS).exists(), "killed too late"

    resumed = run_cli("moa_lit.train", [*args, "resume=true"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"seed 0 fold 1: resuming from {fold1_last}" in resumed.stdout + resumed.stderr
    for name in ("oof.csv", "submission.csv"):
        got, want = pd.read_csv(killed_dir / name), pd.read_csv(ref_dir / name)
        assert list(got["sig_id"]) == list(want["sig_id"])
        np.testing.assert_allclose(got.drop(columns="sig_id"), want.drop(columns="sig_id"), rtol=0, atol=1e-6)


def test_two_trial_search_on_the_gpu(tmp_path):
    import optuna

    from test_hparams_search import STUDY, search_overrides, sqlite_url

    sweep_dir = tmp_path / "sweep"
    proc = run_cli("moa_lit.train", [*search_overrides(tmp_path, sweep_dir, n_trials=2, seed=0), TRAINER,
                                     f"trainer.precision={PRECISIONS[0]}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name=STUDY, storage=sqlite_url(sweep_dir))
    states = [t.state for t in study.trials]
    assert len(states) == 2 and all(s == optuna.trial.TrialState.COMPLETE for s in states), states
    for trial in study.trials:
        assert np.isfinite(trial.value)
