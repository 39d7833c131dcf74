"""Optuna search through ``python -m moa_lit.train hparams_search=optuna``: a
real sweep on tiny data, resume, failed trials, bad settings, and several
workers sharing one study on a real PostgreSQL server."""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from optuna.trial import TrialState

from conftest import run_cli
from pg_cluster import Unavailable, postgres_server
from moa_lit.runs import files as run_files
from moa_lit.config import CONFIG_DIR
from moa_lit.search import FailureBudget, reproduce_command

STUDY = "moa_mlp"  # conf/hparams_search/optuna.yaml


def search_overrides(tmp_path: Path, sweep_dir: Path, n_trials: int, seed: int) -> list[str]:
    """The real search config on tiny data: one fold of two, one epoch, a
    narrow net; every searched key but the learning rate is pinned so each
    trial takes a second or two."""
    return [
        "-m",
        "hparams_search=optuna",
        f"hydra.sweep.dir={sweep_dir}",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.sampler.seed={seed}",
        "data.n_samples=600",
        f"data.dir={tmp_path / 'data'}",
        "cv.n_folds=2",
        "cv.folds=[0]",
        "trainer.max_epochs=1",
        "callbacks.progress_bar.refresh_rate=0",
        "loader.batch_size=64",
        "model.net.hidden_size=32",
        "model.net.n_layers=1",
        "model.net.dropout_input=0.1",
        "model.net.dropout_hidden=0.2",
        "model.optimizer.weight_decay=1e-6",
        "model.label_smoothing=0.0",
    ]


@pytest.fixture
def postgres_url():
    pytest.importorskip("psycopg2", reason="psycopg2 (the dev extra) is needed to reach PostgreSQL")
    try:
        with postgres_server() as url:
            yield url
    except Unavailable as why:
        pytest.skip(str(why))


def load(storage: str, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def sqlite_url(sweep_dir: Path) -> str:
    return f"sqlite:///{sweep_dir}/optuna.db"


# SGD under OneCycle with a peak learning rate of 1e12 turns the loss NaN in
# the first batches (measured); 0.01 trains normally. With the TPE sampler's
# seed 8 this study draws 1e12, 0.01, 0.01 and, resumed (seed 8 + 3 trials),
# 0.01 again.
DIVERGING_SPACE = ["model.optimizer._target_=torch.optim.SGD", "model.scheduler.max_lr=choice(0.01,1e12)"]
DIVERGING_LR = 1e12


@pytest.mark.slow
def test_search_records_a_diverging_trial_as_failed_goes_on_and_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    args = [*search_overrides(tmp_path, sweep, n_trials=3, seed=8), *DIVERGING_SPACE,
            "hydra.sweeper.max_failure_rate=0.5"]
    first = run_cli("moa_lit.train", args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    trials = load(sqlite_url(sweep)).trials
    assert [t.number for t in trials] == [0, 1, 2]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(failed) == 1 and len(complete) == 2
    # The failure is the divergence, recorded with its cause; the others trained.
    assert failed[0].params["model.scheduler.max_lr"] == DIVERGING_LR
    assert "training loss became nan" in failed[0].system_attrs["moa_lit:error"]
    assert all(t.params["model.scheduler.max_lr"] != DIVERGING_LR for t in complete)
    assert f"Trial {failed[0].number} FAILED with params" in first.stdout + first.stderr

    # Results: the best over the study, in Hydra's results file and printed.
    results = OmegaConf.load(sweep / run_files.OPTIMIZATION_RESULTS)
    best = min(complete, key=lambda t: t.value)
    assert results.best_value == pytest.approx(min(t.value for t in complete))
    assert results.best_trial.number == best.number
    assert dict(results.best_params) == best.params
    assert f"trial {best.number}, {best.value:.6g}" in first.stdout
    for t in trials:  # one folder per trial, named by its number
        assert (sweep / run_files.trial_subdir(t.number)).is_dir()

    # The printed command rebuilds exactly the best trial's training config.
    command = shlex.split(results.best_trial.command)
    assert command[:3] == ["python", "-m", "moa_lit.train"]
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        rebuilt = compose(config_name="train", overrides=command[3:])
    trial_cfg = OmegaConf.load(Path(results.best_trial.run_dir) / run_files.CONFIG)
    assert OmegaConf.to_container(rebuilt) == OmegaConf.to_container(trial_cfg)

    # Resume: the same command with the same sweep folder adds trials.
    args_again = [a for a in args if not a.startswith("hydra.sweeper.n_trials=")] + ["hydra.sweeper.n_trials=1"]
    second = run_cli("moa_lit.train", args_again, cwd=tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    trials_after = load(sqlite_url(sweep)).trials
    assert [t.number for t in trials_after] == [0, 1, 2, 3]
    # Nothing redone or lost: the first trials are untouched.
    assert [(t.state, t.value, t.params) for t in trials_after[:3]] == [(t.state, t.value, t.params) for t in trials]
    assert trials_after[3].state == TrialState.COMPLETE
    assert (sweep / run_files.trial_subdir(3)).is_dir()


@pytest.mark.slow
def test_search_stops_with_one_line_when_too_many_trials_fail(tmp_path):
    sweep = tmp_path / "sweep"
    args = [*search_overrides(tmp_path, sweep, n_trials=3, seed=0), "model.optimizer._target_=torch.optim.SGD",
            "model.scheduler.max_lr=choice(1e11,1e12)", "hydra.sweeper.max_failure_rate=0.34"]
    proc = run_cli("moa_lit.train", args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("moa-lit: error:")]
    assert len(lines) == 1
    assert "search stopped: 2 of 2 trials failed" in lines[0]
    assert "max_failure_rate=0.34" in lines[0]
    trials = load(sqlite_url(sweep)).trials
    assert len(trials) == 2 and all(t.state == TrialState.FAIL for t in trials)


BAD_SETTINGS = {
    "unreachable storage": (
        "hydra.sweeper.storage=postgresql://moa:secret@127.0.0.1:1/moa",
        "moa-lit: error: hydra.sweeper.storage=postgresql://moa:***@127.0.0.1:1/moa: cannot open Optuna study",
    ),
    "unknown search-space key": (
        "model.net.hiden_size=choice(32,64)",
        "moa-lit: error: search space key model.net.hiden_size: no such key in the training config "
        "(did you mean model.net.hidden_size?)",
    ),
    "unknown sampler": (
        "hydra/sweeper/sampler=tpee",
        "moa-lit: error: hydra/sweeper/sampler=tpee: no such hydra/sweeper/sampler config; expected one of cmaes, motpe, nsgaii, random, tpe",
    ),
}


def test_bad_search_settings_end_with_one_line_before_any_trial(tmp_path):
    def attempt(case: str):
        sweep = tmp_path / case.replace(" ", "_")
        bad, _ = BAD_SETTINGS[case]
        return sweep, run_cli("moa_lit.train", [*search_overrides(tmp_path, sweep, 1, 0), bad], cwd=tmp_path)

    with ThreadPoolExecutor(max_workers=len(BAD_SETTINGS)) as pool:  # independent: run them at once
        outcomes = dict(zip(BAD_SETTINGS, pool.map(attempt, BAD_SETTINGS)))
    for case, (sweep, proc) in outcomes.items():
        expected = BAD_SETTINGS[case][1]
        assert proc.returncode != 0, case
        first_line = next((line for line in proc.stderr.splitlines() if line.startswith("moa-lit: error:")), "")
        assert first_line.startswith(expected), (case, proc.stderr[-2000:])
        assert "secret" not in proc.stdout + proc.stderr, case
        assert not list(sweep.glob("trial_*")), case
    for case in BAD_SETTINGS:
        assert outcomes[case][1].returncode == 2, case


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_one_study_on_postgresql(tmp_path, postgres_url):
    """Two sweeper processes at once, one study: trials add up, numbers are
    unique and every trial completes."""
    per_worker = 2

    def worker(i: int):
        # Own data folders: like workers on separate machines (and the
        # synthetic data is generated on first use).
        args = [*search_overrides(tmp_path / f"machine{i}", tmp_path / f"worker{i}", per_worker, seed=100 + i),
                f"hydra.sweeper.storage={postgres_url}", "hydra.sweeper.study_name=shared", "num_threads=1"]
        return run_cli("moa_lit.train", args, cwd=tmp_path)

    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(worker, range(2)))
    for proc in procs:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = load(postgres_url, "shared").trials
    assert len(trials) == 2 * per_worker
    assert sorted(t.number for t in trials) == list(range(2 * per_worker))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # Each trial ran in its own numbered folder of the worker that ran it.
    folders = sorted(p.name for i in range(2) for p in (tmp_path / f"worker{i}").glob("trial_*"))
    assert folders == [run_files.trial_subdir(t.number) for t in sorted(trials, key=lambda t: t.number)]


def test_failure_budget_counts_against_the_planned_trials():
    budget = FailureBudget(n_trials=20, max_failure_rate=0.25)
    assert budget.allowed == 5
    for _ in range(5):
        budget.record(failed=True)
    assert not budget.exhausted  # 5 early failures of 20 planned are within the rate
    budget.record(failed=False)
    budget.record(failed=True)
    assert budget.exhausted and (budget.failed, budget.finished) == (6, 7)
    assert FailureBudget(n_trials=3, max_failure_rate=0.0).allowed == 0
    assert FailureBudget(n_trials=3, max_failure_rate=1.0).allowed == 3


def test_reproduce_command_is_a_plain_run_with_shell_safe_overrides():
    command = reproduce_command(
        {"model.net.n_layers": 2, "model.scheduler.max_lr": 0.0031},
        {"hparams_search": "optuna", "cv.folds": "[0,1]", "data.dir": "/data/my lish-moa"},
    )
    assert command == (
        "python -m moa_lit.train 'cv.folds=[0,1]' 'data.dir=/data/my lish-moa' "
        "model.net.n_layers=2 model.scheduler.max_lr=0.0031"
    )
