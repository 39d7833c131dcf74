"""oof_logloss_new_drugs: the OOF log loss over treated rows of drugs kept whole
in their fold (the rows that behave like compounds never profiled), computed by
one function for train, merge, blend and the ensemble, shown first."""

import json
import logging
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, tiny_run_overrides
from moa_lit import schema
from moa_lit.blend import nested_weights, optimise_weights
from moa_lit.runs import files
from moa_lit.runs.run_dir import RunDir
from moa_lit.scoring.metric import mean_logloss
from moa_lit.scoring.scores import NEW_DRUGS, new_drug_rows, optimized_score, score_run
from moa_lit.training.datamodule import MoADataModule
from moa_lit.training.folds import assign_folds

# A planted run: drugs a and b (2 rows each) are kept whole (threshold 3), the
# 4 rows of "big" are spread over both folds, ctl are controls.
PLANTED = pd.DataFrame(
    {
        schema.ID: [f"id{i}" for i in range(10)],
        schema.DRUG: ["a", "a", "b", "b", "big", "big", "big", "big", "ctl", "ctl"],
        "fold": [0, 0, 1, 1, 0, 1, 0, 1, 0, 1],
    }
)
IS_CONTROL = PLANTED[schema.DRUG].eq("ctl").to_numpy()


def planted_predictions():
    """Two targets; the probability given to the true label is 0.5 on the
    new-drug rows, 0.9 on the rows of "big", 1 on the controls (predicted 0, label 0)."""
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [1, 0], [0, 1], [0, 0], [0, 0], [0, 0]], dtype=float)
    right = np.array([0.5] * 4 + [0.9] * 4 + [1.0] * 2)[:, None]
    oof = np.where(targets == 1, right, 1 - right)
    return targets, oof


def test_planted_folds_give_the_hand_computed_new_drug_loss():
    targets, oof = planted_predictions()
    rows = new_drug_rows(PLANTED[schema.DRUG], IS_CONTROL, 3)
    assert rows.tolist() == [True] * 4 + [False] * 6  # controls are not new drugs, even as a small "drug"
    scores = score_run(targets, oof, PLANTED["fold"].to_numpy(), IS_CONTROL, [0, 1], ["t0", "t1"], rows, 3)
    assert scores[NEW_DRUGS] == pytest.approx(math.log(2), rel=1e-12)
    assert scores["oof_logloss_treated"] == pytest.approx((4 * math.log(2) - 4 * math.log(0.9)) / 8, rel=1e-9)
    assert scores["n_new_drug_rows"] == 4 and scores["drug_threshold"] == 3
    assert scores["per_fold"]["0"][NEW_DRUGS] == pytest.approx(math.log(2), rel=1e-12)
    assert list(scores)[0] == NEW_DRUGS
    # A run over fold 0 only scores fold 0's new-drug rows.
    oof_0 = np.where(PLANTED["fold"].to_numpy()[:, None] == 0, oof, np.nan)
    only_0 = score_run(targets, oof_0, PLANTED["fold"].to_numpy(), IS_CONTROL, [0], ["t0", "t1"], rows, 3)
    assert only_0["n_new_drug_rows"] == 2 and only_0[NEW_DRUGS] == pytest.approx(math.log(2), rel=1e-12)
    # With threshold 4, "big" is a new drug too.
    assert new_drug_rows(PLANTED[schema.DRUG], IS_CONTROL, 4).sum() == 8


def test_new_drug_rows_are_the_drugs_assign_folds_keeps_whole():
    rng = np.random.default_rng(0)
    drug = pd.Series(np.repeat([f"d{i}" for i in range(60)], rng.choice([1, 6, 12, 30], 60)))
    targets = rng.random((len(drug), 4)) < 0.2
    folds = assign_folds(targets, drug, n_folds=3, seed=0, drug_threshold=12)
    rows = new_drug_rows(drug, np.zeros(len(drug), bool), 12)
    whole = pd.Series(folds[rows]).groupby(drug[rows].to_numpy()).nunique()
    assert (whole == 1).all()  # each new drug lies in one fold
    assert (pd.Series(folds[~rows]).groupby(drug[~rows].to_numpy()).nunique() > 1).all()  # the others are split


def test_no_drug_ids_means_no_new_drug_rows_and_one_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert new_drug_rows(None, IS_CONTROL, 18) is None
    assert len(caplog.records) == 1 and "no drug ids" in caplog.text and NEW_DRUGS in caplog.text
    targets, oof = planted_predictions()
    scores = score_run(targets, oof, PLANTED["fold"].to_numpy(), IS_CONTROL, [0, 1], ["t0", "t1"])
    assert NEW_DRUGS not in scores
    # what train and the ensemble return for optimized_metric=oof_logloss_new_drugs then
    assert optimized_score(scores, NEW_DRUGS) == scores["oof_logloss_treated"]
    assert optimized_score(scores, "oof_logloss") == scores["oof_logloss"]


def test_blend_weights_are_fitted_on_the_mask_rows():
    """Member 1 is right on the masked rows only: weights fitted on the mask choose it."""
    rng = np.random.default_rng(1)
    truth = (rng.random((200, 3)) < 0.3).astype(float)
    mask = np.arange(200) % 2 == 0
    good = np.where(truth == 1, 0.9, 0.1)
    second = np.where(mask[:, None], good, 1 - good)
    assert optimise_weights(truth[mask], [(1 - good)[mask], second[mask]])[1] == pytest.approx(1.0)
    folds = np.arange(200) % 4
    per_fold = nested_weights(truth, [1 - good, second], folds, [0, 1, 2, 3], mask)
    assert all(w[1] == pytest.approx(1.0) for w in per_fold.values())


# -- runs ----------------------------------------------------------------------------------


def run_overrides(tmp):
    # Threshold 6: the few drugs with 7 to 47 rows are split, so new-drug rows differ from treated rows.
    return [*tiny_run_overrides(tmp, n_samples=600, epochs=3, n_scored=20), "num_threads=1", "cv.drug_threshold=6"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("new-drugs")
    procs = {}
    for name, extra in (("full", []), ("part0", ["cv.folds=[0]"]), ("part1", ["cv.folds=[1]"])):
        procs[name] = run_cli("moa_lit.train", [*run_overrides(tmp), *extra, f"hydra.run.dir={tmp / name}"], cwd=tmp)
        assert procs[name].returncode == 0, procs[name].stderr[-3000:]
    return tmp, procs


def new_drug_loss_of(run_dir):
    """The function applied to the run's own files: oof.csv, labels.csv, folds.csv."""
    run = RunDir(run_dir)
    oof, folds = run.read(files.OOF), run.read(files.FOLDS)
    names = list(oof.columns[1:])
    labels = run.labels(names)
    rows = new_drug_rows(folds[schema.DRUG], labels.is_control, json.loads((run_dir / "scores.json").read_text())["drug_threshold"])
    pos = labels.rows_of(oof[schema.ID], run_dir / "oof.csv")
    keep = rows[pos]
    return mean_logloss(labels.targets[pos][keep], oof[names].to_numpy()[keep]), rows


def test_train_writes_and_prints_the_new_drug_score_first(runs):
    tmp, procs = runs
    run_dir = tmp / "full"
    scores = json.loads((run_dir / "scores.json").read_text())
    assert list(scores)[0] == NEW_DRUGS and scores["drug_threshold"] == 6
    expected, rows = new_drug_loss_of(run_dir)
    assert scores[NEW_DRUGS] == pytest.approx(expected, rel=1e-5)
    assert 0 < scores["n_new_drug_rows"] == rows.sum() < scores["n_treated_rows"]
    assert scores[NEW_DRUGS] != pytest.approx(scores["oof_logloss_treated"], rel=1e-4)
    line = next(line for line in procs["full"].stdout.splitlines() if "OOF log loss" in line)
    assert line.startswith(f"OOF log loss {scores[NEW_DRUGS]:.5f} over {rows.sum()} rows of new drugs")


def test_best_epoch_is_chosen_on_the_new_drug_rows_of_the_fold(runs):
    """The validation loss of the kept epoch is the loss of the fold's OOF predictions on its new-drug rows."""
    tmp, _ = runs
    run_dir = tmp / "full"
    scores = json.loads((run_dir / "scores.json").read_text())
    for summary in scores["fold_summaries"]:
        fold = scores["per_fold"][str(summary["fold"])]
        # 1e-3: validation runs under the trainer's autocast (bf16 on a CPU with
        # native bf16), the OOF predictions in float32.
        assert summary["val_logloss"] == pytest.approx(fold[NEW_DRUGS], rel=1e-3)
        curve = pd.read_csv(next((run_dir / "logs").glob(f"*seed{summary['seed']}_fold{summary['fold']}*/metrics.csv")))
        assert summary["val_logloss"] == pytest.approx(curve["val_logloss"].min(), rel=1e-6)


def test_merge_of_two_fold_parts_gives_the_single_runs_new_drug_score(runs):
    tmp, _ = runs
    merged = run_cli("moa_lit.merge", [f"runs=[{tmp / 'part0'},{tmp / 'part1'}]", f"output_dir={tmp / 'merged'}"], cwd=tmp)
    assert merged.returncode == 0, merged.stderr[-3000:]
    single = json.loads((tmp / "full" / "scores.json").read_text())
    scores = json.loads((tmp / "merged" / "scores.json").read_text())
    assert list(scores)[0] == NEW_DRUGS and scores["drug_threshold"] == 6
    assert scores[NEW_DRUGS] == pytest.approx(single[NEW_DRUGS], rel=1e-5)
    assert scores["n_new_drug_rows"] == single["n_new_drug_rows"]
    assert f"OOF log loss {scores[NEW_DRUGS]:.5f} over" in merged.stdout


def test_blend_scores_and_fits_on_the_new_drug_rows(runs):
    tmp, _ = runs
    proc = run_cli("moa_lit.blend", [f"runs=[{tmp / 'full'},{tmp / 'merged'}]", f"output_dir={tmp / 'blend'}"], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads((tmp / "blend" / "scores.json").read_text())
    assert list(scores)[0] == NEW_DRUGS
    assert scores[NEW_DRUGS] == pytest.approx(new_drug_loss_of(tmp / "blend")[0], rel=1e-5)
    assert "Blended OOF log loss" in proc.stdout and f"{scores[NEW_DRUGS]:.5f} over" in proc.stdout


def test_run_without_drug_ids_has_no_new_drug_score_and_warns(runs):
    tmp, _ = runs
    source = next(d for d in (tmp / "data").iterdir() if (d / schema.TRAIN_DRUG).is_file())
    data = shutil.copytree(source, tmp / "no-drugs", ignore=shutil.ignore_patterns(schema.TRAIN_DRUG, "benchmark_only"))
    overrides = [o for o in run_overrides(tmp) if not o.startswith(("data.", "cv.drug"))]
    proc = run_cli("moa_lit.train", [*overrides, "data=kaggle", f"data.dir={data}", "data.n_genes=772", "data.n_cells=100",
                                     f"hydra.run.dir={tmp / 'no-drugs-run'}"], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads((tmp / "no-drugs-run" / "scores.json").read_text())
    assert NEW_DRUGS not in scores and "n_new_drug_rows" not in scores
    out = proc.stdout + proc.stderr
    warnings = [line for line in out.splitlines() if "WARNING" in line and NEW_DRUGS in line]
    assert len(warnings) == 1 and "no drug ids" in warnings[0] and "oof_logloss_treated" in warnings[0]
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("OOF log loss ")]
    assert line.startswith(f"OOF log loss {scores['oof_logloss']:.5f} over all") and "new drugs" not in line


def test_ensemble_fits_nested_weights_on_and_returns_the_new_drug_rows(tmp_path, capsys):
    from conftest import compose_train
    from moa_lit.train import train

    out = tmp_path / "ensemble"
    value = train(compose_train([
        "experiment=ensemble", "data.n_samples=400", "data.n_scored=20", f"data.dir={tmp_path / 'data'}", "cv.n_folds=2",
        "cv.drug_threshold=6", "trainer.max_epochs=2", "ensemble.models.mlp.net.hidden_size=32", "loader.batch_size=64",
        "callbacks.progress_bar.refresh_rate=0", "allow_worse_than_prior=true", "num_threads=1", f"paths.output_dir={out}",
    ]))
    scores = json.loads((out / "scores.json").read_text())
    expected, rows = new_drug_loss_of(out)
    assert list(scores)[0] == NEW_DRUGS and value == scores[NEW_DRUGS] == pytest.approx(expected, rel=1e-5)
    assert all(list(m)[0] == NEW_DRUGS for m in scores["ensemble"]["members"].values())
    assert capsys.readouterr().out.splitlines()[-2].startswith(f"Ensemble (nested) OOF log loss {value:.5f} over {rows.sum()} rows of new drugs")
    # The recorded nested weights are those fitted on the other fold's new-drug rows.
    names = list(scores["ensemble"]["weights"])
    oof = RunDir(out).read(files.OOF)
    targets = list(oof.columns[1:])
    labels = RunDir(out).labels(targets)
    pos = labels.rows_of(oof[schema.ID], out)
    folds = RunDir(out).read(files.FOLDS)["fold"].to_numpy()[pos]
    preds = [RunDir(out / "members" / n).read(files.OOF)[targets].to_numpy() for n in names]
    again = nested_weights(labels.targets[pos], preds, folds, [0, 1], rows[pos])
    for k, w in scores["ensemble"]["weights_per_fold"].items():
        np.testing.assert_allclose(again[int(k)], [w[n] for n in names], atol=1e-6)


def test_validation_batches_are_the_folds_new_drug_rows_else_its_treated_rows():
    from test_features import make_frame

    frame, targets, layout = make_frame(n=60)
    is_control = (frame[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    folds = np.arange(60) % 2
    new_drugs = (np.arange(60) % 4 == 0) & ~is_control  # fold 0 only
    dm = MoADataModule(frame, targets, folds, is_control, list(layout.genes), list(layout.cells),
                       feature_params={"rank_gauss": False}, batch_size=16, new_drugs=new_drugs)
    for fold, chosen in ((0, new_drugs & (folds == 0)), (1, (folds == 1) & ~is_control)):
        dm.set_fold(fold)
        (x, y), = list(dm.val_dataloader())
        np.testing.assert_array_equal(y.numpy(), targets[chosen])
        assert len(dm.tensors.x_val) == len(dm.val_rows(fold))  # every treated row is still predicted out of fold
