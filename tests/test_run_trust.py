"""No quiet failure of training: a run worse than the prior or that diverged
ends with one line and exit status 3 (its outputs kept); settings that would be
ignored or skipped are said before training."""

from __future__ import annotations

import json
import re
import logging
from pathlib import Path

import pytest

from conftest import compose_train, tiny_run_overrides
from moa_lit import run_checks
from moa_lit.runs import files as run_files
from moa_lit.cli import run_and_exit_on_error
from moa_lit.train import train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trust")


def compose_run(data_root: Path, run_dir: Path, extra: list[str], epochs: int = 3):
    overrides = [o for o in tiny_run_overrides(data_root, n_samples=600, epochs=epochs) if not o.startswith("allow_worse")]
    return compose_train([*overrides, "num_threads=1", f"paths.output_dir={run_dir}", *extra])


@pytest.mark.slow
def test_a_run_worse_than_the_prior_keeps_its_outputs_and_exits_3(data_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_and_exit_on_error(train, compose_run(data_root, run_dir, ["model.scheduler.max_lr=1000"]))
    assert exit_info.value.code == 3
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("moa-lit: warning: this run should not be trusted: ")
    assert "is worse than the prior's" in line
    assert "model.scheduler.max_lr=1000" in line and "model.optimizer.lr" not in line
    assert "allow_worse_than_prior=true" in line and str(run_dir) in line and len(line) < 600
    # Nothing is lost: every output was written before the verdict.
    for name in (run_files.OOF, run_files.SUBMISSION, run_files.FOLDS, run_files.SCORES):
        assert (run_dir / name).is_file(), name
    scores = json.loads((run_dir / run_files.SCORES).read_text())
    assert scores["oof_logloss"] > scores["prior_logloss"] and scores["untrusted"]

    # Accepted on request: the same run, exit 0 (returns its score).
    value = run_and_exit_on_error(
        train, compose_run(data_root, tmp_path / "accepted", ["model.scheduler.max_lr=1000", "allow_worse_than_prior=true"])
    )
    assert value == pytest.approx(scores["oof_logloss_new_drugs"])  # the default optimized_metric


def write_metrics(path: Path, losses: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["epoch,step,train_loss,val_logloss"]
    for epoch, loss in enumerate(losses):
        rows += [f"{epoch},{epoch},,0.02", f"{epoch},{epoch},{loss},"]  # CSVLogger: one row per hook
    path.write_text("\n".join(rows) + "\n")


def first_divergence(run_dir, seeds, fold_ids):
    found = run_checks.diverged_stages(run_dir, seeds, fold_ids)
    return found[0][1] if found else None


def test_divergence_is_read_from_the_logged_epoch_losses(tmp_path):
    logs = tmp_path / run_files.LOGS
    write_metrics(logs / "seed0_fold0" / "metrics.csv", [0.10, 0.05, 0.04])
    write_metrics(logs / "seed0_fold1" / "metrics.csv", [0.10, 0.08, 0.35])
    assert first_divergence(tmp_path, [0], [0]) is None
    found = first_divergence(tmp_path, [0], [0, 1])
    assert found == "seed 0 fold 1 diverged (training loss 0.35 at epoch 2, 0.1 at epoch 0)"
    assert first_divergence(tmp_path, [1], [0]) is None  # nothing logged: nothing claimed


def test_untrusted_reasons_name_the_setting_that_sets_the_rate(tmp_path):
    scores = {"oof_logloss": 0.5, "prior_logloss": 0.02, "n_rows": 10}
    onecycle = compose_train(["model.scheduler.max_lr=7"])
    assert "model.scheduler.max_lr=7" in run_checks.untrusted_reasons(onecycle, scores, tmp_path, [0], [0])[-1]
    constant = compose_train(["model.scheduler=null", "model.optimizer.lr=0.25"])
    assert "model.optimizer.lr=0.25" in run_checks.untrusted_reasons(constant, scores, tmp_path, [0], [0])[-1]
    assert run_checks.untrusted_reasons(onecycle, {**scores, "oof_logloss": 0.01}, tmp_path, [0], [0]) == []


def test_a_schedule_that_cannot_run_is_said_before_training(data_root, tmp_path, monkeypatch, caplog):
    import moa_lit.train as train_module

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before training")

    monkeypatch.setattr(train_module.CrossValidation, "run_folds", stop)
    cfg = compose_run(data_root, tmp_path / "run", ["loader.batch_size=256", "trainer.max_epochs=1"])
    with caplog.at_level(logging.WARNING, logger="moa_lit.train"), pytest.raises(RuntimeError, match="stopped before"):
        train(cfg)
    (line,) = [r.getMessage() for r in caplog.records if "optimiser steps" in r.getMessage()]
    assert re.match(r"fold \d trains only ([1-3]) optimiser steps \(\1 batches of loader\.batch_size=256 x trainer\.max_epochs=1\)", line)
    assert "model.scheduler.max_lr has no effect" in line
    caplog.clear()
    cfg = compose_run(data_root, tmp_path / "run2", ["loader.batch_size=64", "trainer.max_epochs=1"])
    with caplog.at_level(logging.WARNING, logger="moa_lit.train"), pytest.raises(RuntimeError, match="stopped before"):
        train(cfg)
    assert not [r for r in caplog.records if "optimiser steps" in r.getMessage()]


def test_a_diverging_pretraining_is_caught_without_any_logger(data_root, tmp_path, capsys):
    """The per-epoch losses are the run's own record (train_losses.json), not
    the CSV logger's: with no logger a diverging stage is still named, with the
    setting that sets its rate."""
    run_dir = tmp_path / "run"
    cfg = compose_run(
        data_root, run_dir,
        ["~logger", "data.n_nonscored=20", "pretrain.enabled=true", "pretrain.lr=1000", "pretrain.max_epochs=3"],
        epochs=1,
    )
    with pytest.raises(SystemExit) as exit_info:
        run_and_exit_on_error(train, cfg)
    assert exit_info.value.code == 3
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(r"seed 0 fold \d pretraining diverged \(training loss \S+ at epoch \d, \S+ at the start\)", line), line
    assert "lower pretrain.lr=1000" in line, line
    assert not (run_dir / run_files.LOGS).exists()  # no logger wrote anything
    recorded = json.loads((run_dir / "models" / "seed0" / "fold0" / run_files.TRAIN_LOSSES).read_text())
    assert len(recorded["pretrain"]["epochs"]) == 3 and len(recorded["scored"]["epochs"]) == 1
    assert recorded["pretrain"]["start"] < recorded["pretrain"]["epochs"][0] / 2  # it rose from where it started


def test_a_diverging_stacked_stage_names_stack_lr(tmp_path):
    fold = tmp_path / "models" / "seed0" / "fold1"
    fold.mkdir(parents=True)
    (fold / run_files.TRAIN_LOSSES).write_text(json.dumps({
        "stack inner fold 2": {"start": None, "epochs": [0.1, 0.5]}, "scored": {"start": 0.2, "epochs": [0.1, 0.05]},
    }))
    cfg = compose_train(["stack.enabled=true", "stack.lr=5"])
    reasons = run_checks.untrusted_reasons(cfg, {"oof_logloss": 0.01, "prior_logloss": 0.02, "n_rows": 10}, tmp_path, [0], [0, 1])
    assert reasons == [
        "seed 0 fold 1 stack inner fold 2 diverged (training loss 0.5 at epoch 1, 0.1 at epoch 0)",
        "lower stack.lr=5.0 or train longer",
    ]
    # Without stack.lr the stage runs at the model's rate, and that is named.
    reasons = run_checks.untrusted_reasons(compose_train(["model.scheduler.max_lr=0.01"]), {"oof_logloss": 0.01, "prior_logloss": 0.02, "n_rows": 10}, tmp_path, [0], [1])
    assert reasons[-1] == "lower model.scheduler.max_lr=0.01 or train longer"


def test_a_loss_that_exploded_in_its_first_epoch_counts_against_where_it_started(tmp_path):
    fold = tmp_path / "models" / "seed0" / "fold0"
    fold.mkdir(parents=True)
    (fold / run_files.TRAIN_LOSSES).write_text(json.dumps({"pretrain": {"start": 0.7, "epochs": [3e5, 2e5, 1e5]}}))
    assert first_divergence(tmp_path, [0], [0]) == "seed 0 fold 0 pretraining diverged (training loss 3e+05 at epoch 0, 0.7 at the start)"
