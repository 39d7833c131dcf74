"""Folds run as parallel jobs (joblib launcher) and merged give the same
outputs as one sequential run."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, tiny_run_overrides


@pytest.fixture(scope="module")
def parallel_and_sequential(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merge")
    common = [*tiny_run_overrides(tmp, n_samples=500, epochs=2), "num_threads=1"]
    seq = run_cli("moa_lit.train", [*common, f"hydra.run.dir={tmp / 'sequential'}"], cwd=tmp)
    assert seq.returncode == 0, seq.stderr[-3000:]
    par = run_cli(
        "moa_lit.train",
        ["-m", "hydra/launcher=joblib_folds", "cv.folds=[0],[1]", *common, f"hydra.sweep.dir={tmp / 'sweep'}"],
        cwd=tmp,
    )
    assert par.returncode == 0, par.stderr[-3000:]
    merged = run_cli(
        "moa_lit.merge",
        [f"runs=[{tmp / 'sweep' / '0'},{tmp / 'sweep' / '1'}]", f"output_dir={tmp / 'merged'}"],
        cwd=tmp,
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    return tmp


def test_merged_run_equals_sequential_run(parallel_and_sequential):
    tmp = parallel_and_sequential
    seq, merged = tmp / "sequential", tmp / "merged"
    a, b = pd.read_csv(seq / "oof.csv"), pd.read_csv(merged / "oof.csv")
    assert list(a["sig_id"]) == list(b["sig_id"])
    np.testing.assert_allclose(a.drop(columns="sig_id").to_numpy(), b.drop(columns="sig_id").to_numpy(), atol=1e-6)
    s_seq = json.loads((seq / "scores.json").read_text())
    s_merged = json.loads((merged / "scores.json").read_text())
    assert s_merged["folds"] == [0, 1]
    assert s_merged["oof_logloss"] == pytest.approx(s_seq["oof_logloss"], rel=1e-5)
    assert s_merged["oof_logloss_treated"] == pytest.approx(s_seq["oof_logloss_treated"], rel=1e-5)
    sub_a, sub_b = pd.read_csv(seq / "submission.csv"), pd.read_csv(merged / "submission.csv")
    assert list(sub_a.columns) == list(sub_b.columns)
    np.testing.assert_allclose(sub_a.iloc[:, 1:].to_numpy(), sub_b.iloc[:, 1:].to_numpy(), atol=1e-6)
    for fold in (0, 1):
        assert (merged / "models" / "seed0" / f"fold{fold}" / "best.ckpt").is_file()


def test_merge_refuses_overlapping_or_different_runs(parallel_and_sequential, tmp_path):
    tmp = parallel_and_sequential
    proc = run_cli("moa_lit.merge", [f"runs=[{tmp / 'sweep' / '0'},{tmp / 'sequential'}]", f"output_dir={tmp_path / 'x'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "fold 0 was trained in both" in proc.stderr
    proc = run_cli("moa_lit.merge", [f"runs=[{tmp / 'sweep' / '0'},{tmp_path / 'missing'}]", f"output_dir={tmp_path / 'y'}"], cwd=tmp_path)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr
    assert not (tmp_path / "y" / "oof.csv").exists()
