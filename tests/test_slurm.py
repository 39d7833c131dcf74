"""Trials and folds as SLURM jobs through hydra-submitit-launcher
(hydra/launcher=submitit_slurm) on a real one-node SLURM cluster started on
loopback for these tests (tests/slurm_cluster.py; skipped, saying why, where
it cannot start). Each job gets one core from SLURM and uses one thread."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from conftest import run_cli, tiny_run_overrides
from slurm_cluster import Unavailable, slurm_cluster
from test_hparams_search import search_overrides, sqlite_url
from moa_lit.runs import files as run_files
from moa_lit.config import CONFIG_DIR

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

JOB_CORES = 1


@pytest.fixture(scope="module")
def slurm():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher (the slurm extra) is needed")
    try:
        with slurm_cluster() as cluster:
            yield cluster
    except Unavailable as why:
        pytest.skip(f"no SLURM cluster: {why}")


def slurm_launcher(cluster: dict) -> list[str]:
    return [
        "hydra/launcher=submitit_slurm",
        f"hydra.launcher.partition={cluster['partition']}",
        f"hydra.launcher.cpus_per_task={JOB_CORES}",
        "hydra.launcher.mem_gb=null",
        "hydra.launcher.timeout_min=15",
    ]


def slurm_job_ids(sweep: Path) -> list[str]:
    """The SLURM array tasks submitit ran (``<job id>_<task>``, one folder
    each), each with the result it pickled."""
    folders = sorted(p for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    for folder in folders:
        assert list(folder.glob("*_result.pkl")), folder
    return [p.name for p in folders]


def threads_logged(run_dir: Path) -> list[str]:
    # The data line (a busy machine's warning also names threads).
    lines = [line for log in run_dir.glob("*.log") for line in log.read_text().splitlines()
             if "training rows" in line and "threads" in line]
    return [line.rsplit(";", 1)[-1].split(",")[0].strip() for line in lines]


def test_launcher_config_has_the_plugins_keys():
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    ours = OmegaConf.load(Path(CONFIG_DIR) / "hydra" / "launcher" / "submitit_slurm.yaml")
    assert set(ours.keys()) == set(OmegaConf.structured(SlurmQueueConf).keys())


def test_a_two_trial_search_runs_its_trials_as_slurm_jobs(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    args = [*search_overrides(tmp_path, sweep, n_trials=2, seed=3), *slurm_launcher(slurm), "hydra.sweeper.n_jobs=2"]
    proc = run_cli("moa_lit.train", args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = optuna.load_study(study_name="moa_mlp", storage=sqlite_url(sweep)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    # Both trials ran as one SLURM job array of two tasks.
    jobs = slurm_job_ids(sweep)
    assert len(jobs) == 2 and len({j.split("_")[0] for j in jobs}) == 1, jobs
    for t in trials:
        run_dir = Path(t.user_attrs["moa_lit:run_dir"])
        assert run_dir == sweep / run_files.trial_subdir(t.number)
        assert (run_dir / run_files.SCORES).is_file()
        # No num_threads given: the job used the cores SLURM gave it.
        assert threads_logged(run_dir) == [f"{JOB_CORES} threads"]
    assert (sweep / run_files.OPTIMIZATION_RESULTS).is_file()


def test_folds_as_slurm_jobs_merge_into_the_local_run(slurm, tmp_path):
    common = tiny_run_overrides(tmp_path, n_samples=500, epochs=2)
    local = run_cli("moa_lit.train", [*common, f"num_threads={JOB_CORES}", f"hydra.run.dir={tmp_path / 'local'}"],
                    cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = run_cli("moa_lit.train", ["-m", *slurm_launcher(slurm), "cv.folds=[0],[1]", *common,
                                     f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert jobs.returncode == 0, jobs.stdout[-3000:] + jobs.stderr[-3000:]
    assert len(slurm_job_ids(sweep)) == 2
    for part in ("0", "1"):
        assert threads_logged(sweep / part) == [f"{JOB_CORES} threads"]
    merged = run_cli("moa_lit.merge", [f"runs=[{sweep / '0'},{sweep / '1'}]", f"output_dir={tmp_path / 'merged'}"],
                     cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr[-3000:]

    a, b = pd.read_csv(tmp_path / "local" / "oof.csv"), pd.read_csv(tmp_path / "merged" / "oof.csv")
    assert list(a["sig_id"]) == list(b["sig_id"])
    np.testing.assert_allclose(a.drop(columns="sig_id").to_numpy(), b.drop(columns="sig_id").to_numpy(), atol=1e-6)
    s_local = json.loads((tmp_path / "local" / "scores.json").read_text())
    s_merged = json.loads((tmp_path / "merged" / "scores.json").read_text())
    assert s_merged["oof_logloss"] == pytest.approx(s_local["oof_logloss"], rel=1e-6)


def test_without_num_threads_a_job_uses_the_cores_slurm_gave_it(monkeypatch):
    import torch

    from moa_lit.cli import available_cores, configure_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
        assert available_cores() == 3 and configure_threads(None) == 3 and torch.get_num_threads() == 3
        assert configure_threads(2) == 2  # num_threads wins
        monkeypatch.delenv("SLURM_CPUS_PER_TASK")
        assert available_cores() == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)
