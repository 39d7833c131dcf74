"""Threads when num_threads is null: the cores given divided by the jobs run
at once (issue 15, point 3), and the one line a busy machine gets."""

from __future__ import annotations

import os

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from moa_lit import cli
from moa_lit.config import CONFIG_DIR


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def hydra_config(overrides: list[str], mode: RunMode = RunMode.MULTIRUN):
    """A job's Hydra config as the real config composes it (launcher and sweeper nodes)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR):
            cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    hydra_cfg = cfg.hydra
    with open_dict(hydra_cfg):
        hydra_cfg.mode = mode
    return hydra_cfg


def fake_cores(monkeypatch, n: int) -> None:
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)))


def test_joblib_jobs_share_the_cores_they_were_given(monkeypatch):
    fake_cores(monkeypatch, 8)
    joblib = hydra_config(["hydra/launcher=joblib_folds"])  # n_jobs: 2
    assert cli.parallel_jobs(joblib) == 2
    assert cli.configure_threads(None, cli.parallel_jobs(joblib)) == 4 == torch.get_num_threads()
    assert cli.parallel_jobs(hydra_config(["hydra/launcher=joblib_folds", "hydra.launcher.n_jobs=3"])) == 3
    assert cli.configure_threads(None, 3) == 2  # 8 // 3
    # A search's trials per batch cap what the launcher could run at once.
    search = hydra_config(["hydra/launcher=joblib_folds", "hydra.launcher.n_jobs=4", "hparams_search=optuna",
                           "hydra.sweeper.n_jobs=2"])
    assert cli.parallel_jobs(search) == 2
    # joblib's -1: one job per core of the machine.
    fake_cores(monkeypatch, 6)
    assert cli.parallel_jobs(hydra_config(["hydra/launcher=joblib_folds", "hydra.launcher.n_jobs=-1"])) == 6
    assert cli.parallel_jobs(hydra_config(["hydra/launcher=joblib_folds", "hydra.launcher.n_jobs=-2"])) == 5
    assert cli.configure_threads(None, 7) == 1  # never 0


def test_one_job_at_a_time_keeps_every_core(monkeypatch):
    fake_cores(monkeypatch, 4)
    assert cli.parallel_jobs(None) == 1  # not a Hydra job
    assert cli.parallel_jobs(hydra_config([], mode=RunMode.RUN)) == 1  # a single run
    assert cli.parallel_jobs(hydra_config(["hydra/launcher=joblib_folds"], mode=RunMode.RUN)) == 1
    assert cli.parallel_jobs(hydra_config([])) == 1  # the basic launcher runs jobs one after another
    assert cli.configure_threads(None, 1) == 4
    assert cli.configure_threads(3, 2) == 3  # num_threads wins


def test_slurm_cores_are_divided_among_parallel_jobs(monkeypatch):
    fake_cores(monkeypatch, 64)  # the node's cores: not what the job was given
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert cli.configure_threads(None, cli.parallel_jobs(hydra_config(["hydra/launcher=joblib_folds"]))) == 3
    # A job array on the submitit launcher: each job has its own cores.
    submitit = OmegaConf.create({"mode": RunMode.MULTIRUN, "launcher": {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"},
                                 "sweeper": {"n_jobs": 8}})
    assert cli.parallel_jobs(submitit) == 1 and cli.configure_threads(None, 1) == 6


def test_a_busy_machine_is_named_in_one_line(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.4, 1.0, 0.5))
    line = cli.busy_machine_line(2)
    assert line is not None and "\n" not in line and "3.4" in line and "2 cores" in line
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 1.0, 0.5))
    assert cli.busy_machine_line(2) is None
