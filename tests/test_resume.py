"""Runs that survive interruption and give the same result twice: a real
training subprocess is killed with SIGKILL mid-fold and resumed, and its OOF
predictions must equal an uninterrupted run's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, compose_train, run_cli, tiny_run_overrides
from moa_lit.data.synthetic import SyntheticConfig, ensure_synthetic
from moa_lit.runs import files as run_files
from moa_lit.runs.run_dir import RunDir
from moa_lit.training import stages
from moa_lit.errors import MoAError
from moa_lit.train import train

EPOCHS = 6  # enough that the second fold is still training when it is killed


def overrides(tmp: Path) -> list[str]:
    return [*tiny_run_overrides(tmp, n_samples=600, epochs=EPOCHS), "num_threads=1"]


def compose_run(tmp: Path, run_dir: Path, extra: list[str] = ()):
    return compose_train([*overrides(tmp), f"paths.output_dir={run_dir}", *extra])

def read_outputs(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(run_dir / run_files.OOF), pd.read_csv(run_dir / run_files.SUBMISSION)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same tiny run twice, uninterrupted and in-process; the first one
    records every path written through ``run_files.atomic_path``."""
    tmp = tmp_path_factory.mktemp("resume")
    written: list[Path] = []
    real_atomic_path = run_files.atomic_path

    def recording_atomic_path(path):
        written.append(Path(path).resolve())
        return real_atomic_path(path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_files, "atomic_path", recording_atomic_path)
        train(compose_run(tmp, tmp / "a"))
    train(compose_run(tmp, tmp / "b"))
    return tmp, written


def test_same_config_and_seed_give_identical_outputs(reference):
    tmp, _ = reference
    for name in (run_files.OOF, run_files.SUBMISSION, run_files.FOLDS):
        assert (tmp / "a" / name).read_bytes() == (tmp / "b" / name).read_bytes(), name


def test_every_run_output_is_written_atomically(reference):
    tmp, written = reference
    outputs = [
        p.resolve()
        for p in (tmp / "a").rglob("*")
        # Lightning's loggers write their own files (metrics.csv, hparams.yaml)
        if p.is_file() and run_files.LOGS not in p.relative_to(tmp / "a").parts
    ]
    names = {p.name for p in outputs}
    assert {"oof.csv", "submission.csv", "scores.json", "folds.csv", "settings.yaml", "best.ckpt",
            run_files.PREPROCESSOR, "fold.json", "predictions.npz"} <= names
    # last.ckpt is removed when its fold finishes; on an epoch that improved it is
    # a link to best.ckpt, otherwise a full write through atomic_path (checked in
    # test_atomic_outputs.py).
    assert [p for p in outputs if p not in written] == []
    assert not list((tmp / "a").rglob(f"*{run_files.TEMPORARY_SUFFIX}"))


def start_cli(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "moa_lit.train", *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def kill_in_second_fold(args: list[str], run_dir: Path, cwd: Path) -> subprocess.Popen:
    """Start ``python -m moa_lit.train args`` and SIGKILL it once fold 0 has
    finished and fold 1 has saved a checkpoint to resume from."""
    fold0_done = run_files.fold_dir(run_dir, 0, 0) / run_files.FOLD_PREDICTIONS
    fold1_last = run_files.fold_dir(run_dir, 0, 1) / run_files.LAST_CHECKPOINT
    log = cwd / f"{run_dir.name}.log"
    proc = start_cli(args, cwd, log)
    try:
        deadline = time.monotonic() + 300
        while not (fold0_done.exists() and fold1_last.exists()):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never reached its second fold"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return proc


def test_killed_run_resumes_to_the_uninterrupted_result(reference):
    tmp, _ = reference
    run_dir = tmp / "killed"
    args = [*overrides(tmp), f"hydra.run.dir={run_dir}"]
    fold1_last = run_files.fold_dir(run_dir, 0, 1) / run_files.LAST_CHECKPOINT
    proc = kill_in_second_fold(args, run_dir, tmp)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_files.fold_dir(run_dir, 0, 1) / run_files.FOLD_PREDICTIONS).exists(), "killed too late"
    assert not (run_dir / run_files.OOF).exists()

    resumed = run_cli("moa_lit.train", [*args, "resume=true"], cwd=tmp)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "seed 0 fold 0: finished before" in log
    assert f"seed 0 fold 1: resuming from {fold1_last}" in log

    oof, sub = read_outputs(run_dir)
    ref_oof, ref_sub = read_outputs(tmp / "a")
    assert list(oof["sig_id"]) == list(ref_oof["sig_id"])
    np.testing.assert_allclose(oof.drop(columns="sig_id"), ref_oof.drop(columns="sig_id"), rtol=0, atol=1e-7)
    np.testing.assert_allclose(sub.drop(columns="sig_id"), ref_sub.drop(columns="sig_id"), rtol=0, atol=1e-7)

    # The resumed fold's learning curve holds every epoch, the ones before the kill included.
    curve = RunDir(run_dir).curve(0, 1)
    ref_curve = RunDir(tmp / "a").curve(0, 1)
    assert list(curve.index) == list(range(EPOCHS)) == list(ref_curve.index)
    np.testing.assert_allclose(curve["val_logloss"], ref_curve["val_logloss"], rtol=0, atol=1e-6)
    assert not RunDir(run_dir).earlier_metrics_file(0, 1).exists()


def test_resuming_a_finished_run_reuses_its_folds(reference, caplog):
    tmp, _ = reference
    run_dir = tmp / "finished"
    shutil.copytree(tmp / "b", run_dir)  # a moved run folder resumes too
    assert not list(run_dir.rglob(run_files.LAST_CHECKPOINT))  # finished folds drop it
    fold0 = run_files.fold_dir(run_dir, 0, 0) / run_files.FOLD_PREDICTIONS
    before = fold0.read_bytes()
    # Killed before fold 1 wrote its predictions and had a checkpoint: it is trained again.
    (run_files.fold_dir(run_dir, 0, 1) / run_files.FOLD_PREDICTIONS).unlink()
    (run_dir / run_files.OOF).unlink()
    stale = run_dir / "models" / f".predictions.npz.x{run_files.TEMPORARY_SUFFIX}"
    stale.write_bytes(b"half a file")  # what a SIGKILL during a write leaves
    caplog.set_level("INFO")
    train(compose_run(tmp, run_dir, ["resume=true"]))
    assert "seed 0 fold 0: finished before" in caplog.text and "resuming from" not in caplog.text
    assert not stale.exists()
    assert fold0.read_bytes() == before
    for name in (run_files.OOF, run_files.SUBMISSION):
        assert (run_dir / name).read_bytes() == (tmp / "b" / name).read_bytes()


def test_resume_refuses_other_settings_and_leaves_the_run_alone(reference):
    tmp, _ = reference
    run_dir = tmp / "b"
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(MoAError, match=r"resume=true: .* was run with other settings \(model\.net\.hidden_size: 64 -> 32\)"):
        train(compose_run(tmp, run_dir, ["resume=true", "model.net.hidden_size=32"]))
    with pytest.raises(MoAError, match=r"already holds a run; add resume=true"):
        train(compose_run(tmp, run_dir))
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before


def test_checkpoint_memory_survives_a_moved_run_folder(tmp_path):
    import torch

    from moa_lit.training.callbacks import FoldCheckpoint

    old, new = tmp_path / "old" / "fold1", tmp_path / "new" / "fold1"
    saved = FoldCheckpoint(dirpath=str(old), monitor="val_logloss", filename="best")
    saved.best_model_score = torch.tensor(0.0123)
    saved.best_model_path = str(old / "best.ckpt")
    saved.best_k_models = {str(old / "best.ckpt"): torch.tensor(0.0123)}
    resumed = FoldCheckpoint(dirpath=str(new), monitor="val_logloss", filename="best")
    resumed.load_state_dict(saved.state_dict())
    # Lightning's own ModelCheckpoint forgets the score here, so any later epoch would count as best.
    assert float(resumed.best_model_score) == pytest.approx(0.0123)
    assert resumed.best_model_path == str(new.resolve() / "best.ckpt")
    assert list(resumed.best_k_models) == [str(new.resolve() / "best.ckpt")]


def kaggle_layout_args(tmp: Path, run_dir: Path, extra: list[str] = ()) -> tuple[Path, list[str]]:
    """A small Kaggle-layout folder read as data=kaggle (so no generator rewrites it) and a tiny run on it."""
    folder = ensure_synthetic(SyntheticConfig(n_samples=300, seed=5, n_scored=20, n_nonscored=12), tmp / "kaggle")
    args = ["data=kaggle", f"data.dir={folder}", "cv.n_folds=2", "trainer.max_epochs=2", "model.net.hidden_size=16",
            "loader.batch_size=32", "callbacks.progress_bar.refresh_rate=0", "num_threads=1", f"paths.output_dir={run_dir}",
            "allow_worse_than_prior=true",  # one epoch on 150 rows can score about the prior; resume is the point
            *extra]
    return folder, args


def mtimes(run_dir: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}


def test_resume_refuses_changed_data_naming_the_file(tmp_path):
    run_dir = tmp_path / "run"
    folder, args = kaggle_layout_args(tmp_path, run_dir, ["cv.folds=[0]", "trainer.max_epochs=1"])
    train(compose_train(args))
    before = mtimes(run_dir)
    features = folder / "train_features.csv"
    original = features.read_text()
    lines = original.splitlines(keepends=True)
    fields = lines[1].rstrip("\n").split(",")
    fields[-1] = "0.123"  # one c-* value of the first row: still a valid file
    lines[1] = ",".join(fields) + "\n"
    features.write_text("".join(lines))
    with pytest.raises(MoAError, match=r"^resume=true: the data changed since .*: train_features.csv \(SHA-1 \w+ -> \w+"):
        train(compose_train([*args, "resume=true"]))
    assert mtimes(run_dir) == before  # nothing of the run was touched
    # The same content written again (a new modification time) is the same data.
    features.write_text(original)
    train(compose_train([*args, "resume=true"]))


def test_resumed_stacked_fold_loads_its_stacked_models(tmp_path, monkeypatch, caplog):
    first, second = tmp_path / "first", tmp_path / "second"
    _, args = kaggle_layout_args(tmp_path, first, ["stack.enabled=true", "stack.inner_folds=2", "stack.max_epochs=1"])
    train(compose_train(args))
    shutil.copytree(first, second)
    fold1 = run_files.fold_dir(second, 0, 1)
    assert (fold1 / run_files.STACK_MODELS).is_file()
    # Interrupted after the stacked stage of fold 1, before its predictions were written.
    (fold1 / run_files.FOLD_PREDICTIONS).unlink()
    (second / run_files.OOF).unlink()
    trained = []
    original = stages.train_without_validation

    def spy(plan, node, dm, x, y, label, root):
        trained.append(label)
        return original(plan, node, dm, x, y, label, root)

    monkeypatch.setattr(stages, "train_without_validation", spy)
    caplog.set_level("INFO")
    train(compose_train([*[a for a in args if not a.startswith("paths.")], f"paths.output_dir={second}", "resume=true"]))
    assert trained == []  # no inner model trained again
    assert f"seed 0 fold 1: stacked models loaded from {fold1 / run_files.STACK_MODELS}" in caplog.text
    for name in (run_files.OOF, run_files.SUBMISSION):
        assert (second / name).read_bytes() == (first / name).read_bytes(), name
