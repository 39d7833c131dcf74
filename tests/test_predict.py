"""Predicting new compounds from a saved run: agreement with training's own test
predictions, controls, top-k, and one clear error per missing or bad piece."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from moa_lit.runs import files as run_files
from moa_lit.errors import MoAError
from moa_lit.predict import predict, top_k_table
from saved_run import run_predict_cli, trained_run


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture
def run_copy(saved, tmp_path):
    """A copy of the run to break: the shared run stays whole."""
    return shutil.copytree(saved[0], tmp_path / "run-copy")


def test_predict_from_elsewhere_without_training_data_matches_training(saved, tmp_path):
    run_dir, data_dir = saved
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(data_dir / "test_features.csv", new / "compounds.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    hidden = data_dir.with_name(data_dir.name + "-hidden")
    data_dir.rename(hidden)  # predict must not need the training data
    try:
        proc = run_predict_cli([f"run_dir={run_dir}", "input=../new/compounds.csv", "top_k=3"], cwd=elsewhere)
    finally:
        hidden.rename(data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["seeds"] == [0, 1]  # an average over seeds too
    assert "with 4 models" in proc.stdout

    ours = pd.read_csv(elsewhere / "compounds_predictions.csv")
    training = pd.read_csv(run_dir / "submission.csv")
    assert list(ours.columns) == list(training.columns)
    assert list(ours["sig_id"]) == list(training["sig_id"])
    p = ours.drop(columns="sig_id").to_numpy()
    np.testing.assert_allclose(p, training.drop(columns="sig_id").to_numpy(), rtol=0, atol=1e-6)

    test = pd.read_csv(new / "compounds.csv", usecols=["sig_id", "cp_type"])
    control = (test["cp_type"] == "ctl_vehicle").to_numpy()
    assert control.any() and (p[control] == 0).all() and (p[~control] > 0).all()

    top = pd.read_csv(elsewhere / "compounds_predictions_top3.csv")
    assert list(top.columns) == ["sig_id", "rank", "moa", "probability"]
    assert set(top["sig_id"]) == set(test["sig_id"][~control])  # controls rank nothing
    first = ours.set_index("sig_id").loc[top["sig_id"][top["rank"] == 1]]
    assert list(top["moa"][top["rank"] == 1]) == list(first.idxmax(axis=1))
    assert (top.groupby("sig_id")["probability"].diff().dropna() <= 0).all()


def test_top_k_table_ranks_and_skips_zero_rows():
    preds = pd.DataFrame({"sig_id": ["a", "b"], "x": [0.1, 0.0], "y": [0.7, 0.0], "z": [0.3, 0.0]})
    top = top_k_table(preds, 2)
    assert top.to_dict("list") == {"sig_id": ["a", "a"], "rank": [1, 2], "moa": ["y", "z"], "probability": [0.7, 0.3]}


def _predict(run_dir, source, tmp_path, monkeypatch, **extra):
    cfg = OmegaConf.create({"run_dir": str(run_dir), "input": str(source), "output": str(tmp_path / "out.csv"),
                            "top_k": 0, "num_threads": 1, **extra})
    return predict(cfg)


def test_input_missing_a_column_names_it(saved, tmp_path, monkeypatch):
    run_dir, data_dir = saved
    frame = pd.read_csv(data_dir / "test_features.csv").drop(columns=["g-3"])
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(MoAError, match="g-3") as err:
        _predict(run_dir, bad, tmp_path, monkeypatch)
    assert "bad.csv" in str(err.value)
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    "breaks, message",
    [
        (lambda run: (run / "run.json").unlink(), "run.json: missing"),
        (lambda run: (run / "models" / "seed0" / "fold1" / "best.ckpt").unlink(), "fold1/best.ckpt: missing"),
        (lambda run: (run / "models" / "seed0" / "fold0" / run_files.PREPROCESSOR).write_bytes(b"junk"),
         f"fold0/{run_files.PREPROCESSOR}: cannot be loaded"),
        (lambda run: (run / "run.json").write_text(
            json.dumps({**json.loads((run / "run.json").read_text()), "format_version": 99})),
         "run format version 99"),
    ],
    ids=["no-manifest", "no-checkpoint", "corrupt-preprocessor", "newer-format"],
)
def test_broken_run_dir_gets_one_clear_error(saved, run_copy, tmp_path, monkeypatch, breaks, message):
    breaks(run_copy)
    with pytest.raises(MoAError, match=message):
        _predict(run_copy, saved[1] / "test_features.csv", tmp_path, monkeypatch)


@pytest.mark.parametrize(
    "extra, message",
    [({"top_k": 1000}, "top_k=1000"), ({"input": "nope.csv"}, "nope.csv: no such file"), ({"input": "???"}, "input is required")],
)
def test_bad_settings(saved, tmp_path, monkeypatch, extra, message):
    run_dir, data_dir = saved
    with pytest.raises(MoAError, match=message):
        _predict(run_dir, data_dir / "test_features.csv", tmp_path, monkeypatch, **extra)


def test_output_may_not_overwrite_the_input(saved, tmp_path, monkeypatch):
    run_dir, data_dir = saved
    source = shutil.copy(data_dir / "test_features.csv", tmp_path / "x.csv")
    with pytest.raises(MoAError, match="is the input file"):
        _predict(run_dir, source, tmp_path, monkeypatch, output=str(source))


def test_cli_error_is_one_line_naming_the_missing_file(tmp_path):
    proc = run_predict_cli([f"run_dir={tmp_path}", "input=x.csv"], cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{tmp_path / run_files.RUN_MANIFEST}: missing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_input_without_rows_is_refused(saved, tmp_path, monkeypatch):
    run_dir, data_dir = saved
    empty = tmp_path / "empty.csv"
    empty.write_text((data_dir / "test_features.csv").read_text().splitlines()[0] + "\n")
    with pytest.raises(MoAError, match="no (data )?rows"):
        _predict(run_dir, empty, tmp_path, monkeypatch)


def test_output_inside_a_run_is_refused(saved, run_copy, tmp_path, monkeypatch):
    _, data_dir = saved
    before = (run_copy / "submission.csv").read_bytes()
    with pytest.raises(MoAError, match=r"output=.*submission.csv is inside the run it reads .*expected a path outside run folders"):
        _predict(run_copy, data_dir / "test_features.csv", tmp_path, monkeypatch, output=str(run_copy / "submission.csv"))
    assert (run_copy / "submission.csv").read_bytes() == before
    elsewhere = tmp_path / "another"
    shutil.copytree(run_copy, elsewhere)
    for output in (elsewhere / "p.csv", elsewhere / "models" / "p.csv"):  # in another run, or deeper in one
        with pytest.raises(MoAError, match=r"is inside a run's output folder"):
            _predict(run_copy, data_dir / "test_features.csv", tmp_path, monkeypatch, output=str(output), top_k=2)
        assert not output.exists()


def test_output_replaces_only_an_earlier_predictions_file_and_gz_is_gzip(saved, tmp_path, monkeypatch):
    import gzip

    run_dir, data_dir = saved
    source = data_dir / "test_features.csv"
    gz = tmp_path / "p.csv.gz"
    _predict(run_dir, source, tmp_path, monkeypatch, output=str(gz), top_k=2)
    with gzip.open(gz, "rt") as f:  # gzip, as the name says; the same predictions
        written = pd.read_csv(f)
    plain = _predict(run_dir, source, tmp_path, monkeypatch, output=str(tmp_path / "p.csv"), top_k=2)
    pd.testing.assert_frame_equal(written, pd.read_csv(plain))
    assert list(pd.read_csv(tmp_path / "p_top2.csv").columns) == ["sig_id", "rank", "moa", "probability"]
    # Run again over its own outputs (predictions and top-k table): replaced.
    _predict(run_dir, source, tmp_path, monkeypatch, output=str(plain), top_k=2)
    theirs = tmp_path / "notes.csv"
    theirs.write_text("sig_id,comment\nid_1,mine\n")
    with pytest.raises(MoAError, match=rf"output={theirs} exists and is not a predictions file of this run"):
        _predict(run_dir, source, tmp_path, monkeypatch, output=str(theirs))
    assert theirs.read_text() == "sig_id,comment\nid_1,mine\n"
    (tmp_path / "q_top2.csv").write_text("sig_id,comment\n")  # the top-k table's name, not a top-k table
    with pytest.raises(MoAError, match=r"q_top2.csv exists and is not a predictions file"):
        _predict(run_dir, source, tmp_path, monkeypatch, output=str(tmp_path / "q.csv"), top_k=2)
    assert not (tmp_path / "q.csv").exists()
