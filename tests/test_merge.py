"""Folds run as parallel jobs (joblib launcher) and merged give the same
outputs as one sequential run."""

import json
import shutil

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


def _hidden(folder):
    """Rename ``folder`` away while the block runs: what runs then cannot read it."""
    import contextlib

    @contextlib.contextmanager
    def hide():
        away = folder.with_name(folder.name + "-hidden")
        folder.rename(away)
        try:
            yield
        finally:
            away.rename(folder)

    return hide()


def test_merged_and_blended_runs_are_complete_runs(parallel_and_sequential, tmp_path):
    """merge and blend read the labels from the runs (no training data, any
    working directory), and predict and report work on what they write."""
    tmp = parallel_and_sequential
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data_dir = next(d for d in (tmp / "data").iterdir() if (d / "test_features.csv").is_file())
    new = tmp_path / "compounds.csv"
    new.write_bytes((data_dir / "test_features.csv").read_bytes())
    merged, blended = tmp_path / "merged", tmp_path / "blended"
    with _hidden(tmp / "data"):
        proc = run_cli("moa_lit.merge", [f"runs=[{tmp / 'sweep' / '0'},{tmp / 'sweep' / '1'}]", f"output_dir={merged}"], cwd=elsewhere)
        assert proc.returncode == 0, proc.stderr[-3000:]
        proc = run_cli("moa_lit.blend", [f"runs=[{tmp / 'sequential'},{merged}]", f"output_dir={blended}"], cwd=elsewhere)
        assert proc.returncode == 0, proc.stderr[-3000:]
        for run in (merged, blended):
            assert (run / "report" / "report.md").is_file()
            shutil.rmtree(run / "report")
            proc = run_cli("moa_lit.report", [f"run_dir={run}"], cwd=elsewhere)
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert (run / "report" / "report.md").is_file()
            out = tmp_path / f"{run.name}_predictions.csv"
            proc = run_cli("moa_lit.predict", [f"run_dir={run}", f"input={new}", f"output={out}", "num_threads=1"], cwd=elsewhere)
            assert proc.returncode == 0, proc.stderr[-3000:]
            ours, written = pd.read_csv(out), pd.read_csv(run / "submission.csv")
            assert list(ours.columns) == list(written.columns) and list(ours["sig_id"]) == list(written["sig_id"])
            np.testing.assert_allclose(ours.iloc[:, 1:].to_numpy(), written.iloc[:, 1:].to_numpy(), rtol=0, atol=1e-6)
    # the merged run scores as the sequential one, from the labels it holds
    s_seq = json.loads((tmp / "sequential" / "scores.json").read_text())
    s_merged = json.loads((merged / "scores.json").read_text())
    assert s_merged["oof_logloss"] == pytest.approx(s_seq["oof_logloss"], rel=1e-5)
    assert s_merged["prior_logloss"] == pytest.approx(s_seq["prior_logloss"], rel=1e-12)
    # the blend of a run with its own merged copy predicts as either of them
    weights = json.loads((blended / "weights.json").read_text())
    assert sum(weights.values()) == pytest.approx(1.0)
    assert json.loads((blended / "run.json").read_text())["members"][1]["run"] == str(merged.resolve())
