"""Runs that fail say why in one line and write no NaN, no partial output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from conftest import compose_train, run_cli, tiny_run_overrides
from moa_lit.runs import files as run_files
from moa_lit.training.callbacks import TrainingDivergedError
from moa_lit.runs.run_dir import InvalidPredictionsError
from moa_lit.training.module import MoAModule
from moa_lit.cli import run_and_exit_on_error
from moa_lit.train import train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("failures")  # the synthetic data, generated once


def compose_run(data_root: Path, run_dir: Path, extra: list[str]):
    overrides = [*tiny_run_overrides(data_root, n_samples=600, epochs=3), "num_threads=1"]
    return compose_train([*overrides, f"paths.output_dir={run_dir}", *extra])

def assert_no_predictions_written(run_dir: Path) -> None:
    assert not list(run_dir.rglob(run_files.FOLD_PREDICTIONS))
    for name in (run_files.OOF, run_files.SUBMISSION, run_files.SCORES):
        assert not (run_dir / name).exists(), name


def test_diverging_training_stops_the_fold_with_the_cause(data_root, tmp_path):
    # Plain SGD at an absurd constant learning rate really diverges (Adam with
    # batch norm rarely does): the message is the callback's, raised on a NaN loss.
    cfg = compose_run(data_root, tmp_path / "run", ["model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=1e12", "model.scheduler=null"])
    with pytest.raises(TrainingDivergedError) as err:
        train(cfg)
    message = str(err.value)
    assert re.match(r"seed 0 fold 0: training loss became (nan|inf) at epoch 0", message)
    assert "model.optimizer.lr" in message and "\n" not in message
    assert_no_predictions_written(tmp_path / "run")


def test_non_finite_predictions_are_never_written(data_root, tmp_path, monkeypatch):
    real = MoAModule.probabilities

    def nan_in_one_cell(self, x, batch_size=8192):
        p = real(self, x, batch_size)
        p[0, 0] = float("nan")
        return p

    monkeypatch.setattr(MoAModule, "probabilities", nan_in_one_cell)
    with pytest.raises(InvalidPredictionsError, match=r"^seed 0 fold 0 out-of-fold predictions: 1 predictions are not finite"):
        train(compose_run(data_root, tmp_path / "run", []))
    assert_no_predictions_written(tmp_path / "run")


def test_out_of_gpu_memory_names_the_settings_to_lower(data_root, tmp_path, monkeypatch, capsys):
    import lightning.pytorch as pl

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)")

    monkeypatch.setattr(pl.Trainer, "fit", out_of_memory)
    with pytest.raises(SystemExit) as exit_info:
        run_and_exit_on_error(train, compose_run(data_root, tmp_path / "run", []))
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("moa-lit: error: seed 0 fold 0: out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "loader.batch_size=64" in line and "model.net.hidden_size=64" in line
    assert_no_predictions_written(tmp_path / "run")


def test_batch_size_larger_than_the_fold_is_one_clear_line(data_root, tmp_path):
    proc = run_cli(
        "moa_lit.train",
        [*tiny_run_overrides(data_root, n_samples=600), "loader.batch_size=5000", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "loader.batch_size=5000 is larger than fold 0's" in proc.stderr
    assert "lower loader.batch_size" in proc.stderr and "Traceback" not in proc.stderr
    assert_no_predictions_written(tmp_path / "run")
