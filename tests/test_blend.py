"""Blending runs: weights on the simplex minimising the OOF log loss, and
refusal of runs whose rows or folds differ. The runs are written by hand
(folds.csv, oof.csv, submission.csv, the labels and run.json), so no training
is needed."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from moa_lit.blend import blend, optimise_weights
from moa_lit.runs.manifest import RunManifest
from moa_lit.runs.run_dir import RunDir, labels_table
from moa_lit.data.sources import load_synthetic
from moa_lit.errors import MoAError
from moa_lit.scoring.metric import mean_logloss

N = 300


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three fake runs on the same tiny synthetic data: noisy versions of the truth."""
    tmp = tmp_path_factory.mktemp("blend")
    data = load_synthetic(str(tmp / "data"), n_samples=N)
    truth = data.scored.to_numpy(dtype=float)
    control = data.train_is_control
    ids = data.train["sig_id"]
    rng = np.random.default_rng(0)
    folds = pd.DataFrame({"sig_id": ids, "drug_id": data.drug, "fold": np.arange(N) % 2})
    test_ids = data.test["sig_id"]
    dirs = []
    for k, noise in enumerate([1.0, 1.0, 2.0]):
        run = tmp / f"run{k}"
        run.mkdir()
        names = list(data.scored.columns)
        RunDir(run).write_labels(labels_table(ids, data.train["cp_type"], truth, names))
        RunDir(run).write_manifest(RunManifest.new(data.layout, names, [0], [0, 1]))
        folds.to_csv(run / "folds.csv", index=False)
        logit = np.where(truth > 0, 2.0, -5.0) + rng.normal(0, noise, truth.shape)
        p = 1 / (1 + np.exp(-logit))
        p[control] = 0
        oof = pd.DataFrame(p, columns=data.scored.columns)
        oof.insert(0, "sig_id", ids)
        oof.to_csv(run / "oof.csv", index=False)
        sub = pd.DataFrame(rng.random((len(test_ids), truth.shape[1])) * 0.1, columns=data.scored.columns)
        sub.insert(0, "sig_id", test_ids)
        sub.to_csv(run / "submission.csv", index=False)
        dirs.append(run)
    return tmp, dirs, truth


def test_weights_on_the_simplex_beat_every_single_run(runs):
    tmp, dirs, truth = runs
    out = tmp / "blended"
    result = blend(dirs, out)
    w = result["weights"]
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert (w > 0.01).sum() >= 2  # noisy runs average better than any one of them
    scores = json.loads((out / "scores.json").read_text())
    singles = [s["oof_logloss"] for s in scores["runs"].values()]
    assert scores["oof_logloss"] <= min(singles)
    oof = pd.read_csv(out / "oof.csv")
    assert scores["oof_logloss"] == pytest.approx(mean_logloss(truth, oof.drop(columns="sig_id").to_numpy()), rel=1e-5)
    assert "oof_logloss_treated" in scores
    weights = json.loads((out / "weights.json").read_text())
    assert list(weights) == [str(d) for d in dirs] and sum(weights.values()) == pytest.approx(1.0)
    subs = [pd.read_csv(d / "submission.csv").drop(columns="sig_id").to_numpy() for d in dirs]
    blended = pd.read_csv(out / "submission.csv").drop(columns="sig_id").to_numpy()
    np.testing.assert_allclose(blended, sum(wk * s for wk, s in zip(w, subs)), rtol=1e-5, atol=1e-9)


def test_optimiser_never_ends_worse_than_the_best_single_run():
    rng = np.random.default_rng(1)
    truth = (rng.random((200, 5)) < 0.1).astype(float)
    good = np.clip(truth * 0.8 + 0.05, 0, 1)
    useless = np.full_like(truth, 0.5)
    w = optimise_weights(truth, [useless, good])
    assert w[1] > 0.95 and w.sum() == pytest.approx(1.0)


def copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_runs_with_other_rows_or_folds_are_refused(runs, tmp_path):
    _, dirs, _ = runs
    fewer = copy_run(dirs[1], tmp_path / "fewer_rows")
    oof = pd.read_csv(fewer / "oof.csv")
    oof.iloc[:-3].to_csv(fewer / "oof.csv", index=False)
    with pytest.raises(MoAError, match=f"runs {dirs[0]} and {fewer} predicted different OOF rows"):
        blend([dirs[0], fewer], tmp_path / "out")

    other_folds = copy_run(dirs[1], tmp_path / "other_folds")
    folds = pd.read_csv(other_folds / "folds.csv")
    folds["fold"] = 1 - folds["fold"]
    folds.to_csv(other_folds / "folds.csv", index=False)
    with pytest.raises(MoAError, match=f"runs {dirs[0]} and {other_folds} have different folds"):
        blend([dirs[0], other_folds], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_cli_blend_and_its_one_line_errors(runs, tmp_path):
    _, dirs, _ = runs
    out = tmp_path / "cli_out"
    proc = run_cli("moa_lit.blend", [f"runs=[{dirs[0]},{dirs[1]}]", f"output_dir={out}"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Blended OOF log loss" in proc.stdout and (out / "weights.json").is_file()

    missing = tmp_path / "missing"
    for args, message in [
        ([f"runs=[{dirs[0]},{missing}]"], f"{missing}/folds.csv: folds.csv not found"),
        ([f"runs=[{dirs[0]}]"], "expected at least two run directories"),
        (["run=[a,b]"], "run: Key 'run' not in 'BlendConfig'; expected one of runs, output_dir, paths"),
    ]:
        proc = run_cli("moa_lit.blend", args, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2
        assert proc.stderr.strip() == f"moa-lit: error: {proc.stderr.strip().split('error: ', 1)[1]}"
        assert message in proc.stderr and "Traceback" not in proc.stderr


def test_blend_never_writes_over_its_runs_another_run_or_other_files(runs, tmp_path):
    import shutil

    tmp, dirs, _ = runs
    for target in (dirs[1], dirs[0] / "sub"):  # one of its runs, or a folder inside one
        before = hash_tree(dirs[0].parent)
        with pytest.raises(MoAError, match=r"is or holds .*, one of the runs this command reads"):
            blend(dirs[:2], target)
        assert hash_tree(dirs[0].parent) == before
    victim = tmp_path / "victim"
    shutil.copytree(dirs[2], victim)
    before = hash_tree(victim)
    # No overwrite: replacing a run means deleting it first.
    with pytest.raises(MoAError, match=rf"output_dir={victim} already holds a run; delete it first, or choose a new output_dir"):
        blend(dirs[:2], victim)
    assert hash_tree(victim) == before
    shutil.rmtree(victim)
    blend(dirs[:2], victim)
    assert json.loads((victim / "weights.json").read_text()).keys() == {str(d) for d in dirs[:2]}


def hash_tree(folder):
    import hashlib

    return {str(p): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}
