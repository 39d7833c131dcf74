"""Each run file appears whole or not at all: a writer that crashes half-way
leaves the previous file intact and no partial file behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_lit.runs import files as run_files
from moa_lit.training.checkpoint_io import AtomicCheckpointIO
from moa_lit.runs.run_dir import FoldDir, FoldPredictions, InvalidPredictionsError, changed_settings


class DiskFull(OSError):
    pass


def half_then_crash(path) -> None:
    with open(path, "wb") as f:
        f.write(b"partial")
    raise DiskFull("simulated crash while writing")


def savez_half_then_crash(file, **arrays) -> None:
    file.write(b"partial")
    raise DiskFull("simulated crash while writing")


WRITERS = {
    "csv": (lambda p: run_files.write_csv(pd.DataFrame({"a": [1, 2]}), p), (run_files.pacsv, "write_csv", lambda table, out, *a: savez_half_then_crash(out))),
    "json": (lambda p: run_files.write_json({"a": 1}, p), (Path, "write_text", lambda self, *a, **k: half_then_crash(self))),
    "bytes": (lambda p: run_files.write_bytes(b"new", p), (Path, "write_bytes", lambda self, *a, **k: half_then_crash(self))),
    "npz": (lambda p: run_files.write_npz(p, a=np.zeros(3)), (np, "savez", savez_half_then_crash)),
    # Serialised in memory first (a full disk is then an OSError), so the crash is in the write.
    "ckpt": (lambda p: save_checkpoint_as_lightning_does(p), (Path, "write_bytes", lambda self, *a, **k: half_then_crash(self))),
}


def save_checkpoint_as_lightning_does(path, io=None) -> None:
    """A save, then the teardown at the end of fit that waits for the background write."""
    io = io or AtomicCheckpointIO()
    io.save_checkpoint({"a": 1}, path)
    io.teardown()


def test_a_failed_background_checkpoint_write_is_raised_at_the_next_save(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    real_write, writes = Path.write_bytes, []

    def first_write_crashes(self, data):
        writes.append(self)
        return half_then_crash(self) if len(writes) == 1 else real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", first_write_crashes)
    io.save_checkpoint({"epoch": 1}, tmp_path / "last.ckpt")
    with pytest.raises(DiskFull):
        io.save_checkpoint({"epoch": 2}, tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary
    io.save_checkpoint({"epoch": 3}, tmp_path / "last.ckpt")  # the writer goes on
    assert io.load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 3  # a load waits for the write
    io.teardown()


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_crash_while_writing_keeps_the_previous_file(tmp_path, monkeypatch, kind):
    write, (owner, name, crash) = WRITERS[kind]
    path = tmp_path / f"output.{kind}"
    path.write_bytes(b"the earlier run's complete file")
    monkeypatch.setattr(owner, name, crash)
    with pytest.raises(OSError):
        write(path)
    assert path.read_bytes() == b"the earlier run's complete file"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_writers_produce_a_whole_file(tmp_path, kind):
    write, _ = WRITERS[kind]
    path = tmp_path / f"output.{kind}"
    write(path)
    assert path.stat().st_size > 0 and [p.name for p in tmp_path.iterdir()] == [path.name]
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert path.stat().st_mode == plain.stat().st_mode  # readable like any file, not private to the owner


def test_fold_predictions_round_trip_and_mark_the_fold_finished(tmp_path):
    rng = np.random.default_rng(0)
    preds = FoldPredictions(val_rows=np.array([1, 4, 7]), oof=rng.random((3, 5)).astype(np.float32).astype(np.float64),
                            test=rng.random((2, 5)).astype(np.float32).astype(np.float64))
    fold_dir = FoldDir(tmp_path, seed=0, fold=0)
    assert not fold_dir.finished()
    fold_dir.save_predictions(preds)
    assert fold_dir.finished()
    back = fold_dir.load_predictions(np.array([1, 4, 7]), n_test=2, n_targets=5)
    assert np.array_equal(back.oof, preds.oof) and np.array_equal(back.test, preds.test)
    with pytest.raises(Exception, match="other validation rows"):
        fold_dir.load_predictions(np.array([1, 4, 8]), n_test=2, n_targets=5)
    with pytest.raises(Exception, match="another test file"):
        fold_dir.load_predictions(np.array([1, 4, 7]), n_test=3, n_targets=5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.1, 1.5])
def test_predictions_outside_0_1_are_refused_and_not_written(tmp_path, bad):
    oof = np.full((3, 2), 0.5)
    oof[2, 1] = bad
    with pytest.raises(InvalidPredictionsError, match=r"^seed 1 fold 2 out-of-fold predictions: 1 predictions .*row 2, target 1"):
        FoldDir(tmp_path, seed=1, fold=2).save_predictions(FoldPredictions(np.arange(3), oof, None))
    assert not FoldDir(tmp_path).finished() and list(tmp_path.iterdir()) == []


def test_only_settings_that_change_predictions_block_a_resume():
    saved = {"seeds": [0], "cv": {"n_folds": 5, "folds": None}, "model": {"lr": 0.001}, "num_threads": None,
             "paths": {"output_dir": "/a"}, "callbacks": {"progress_bar": {"refresh_rate": 20}}}
    harmless = {**saved, "seeds": [0, 1], "cv": {"n_folds": 5, "folds": [1]}, "num_threads": 1, "paths": {"output_dir": "/b"},
                "callbacks": {"progress_bar": {"refresh_rate": 0}}, "resume": True}
    assert changed_settings(saved, harmless) == []
    material = {**saved, "cv": {"n_folds": 3, "folds": None}, "model": {"lr": 0.01}, "pretrain": {"epochs": 5}}
    assert changed_settings(saved, material) == ["cv.n_folds: 5 -> 3", "model.lr: 0.001 -> 0.01", "pretrain.epochs: (unset) -> 5"]
