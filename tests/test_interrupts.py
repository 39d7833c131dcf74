"""Ctrl-C and SIGTERM: one line with the command that continues the run
(pastable with a folder name holding spaces), exit 128 + signal, and the run
goes on from where it stopped with that very command."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, tiny_run_overrides
from moa_lit.runs import files as run_files
from moa_lit.interrupts import continue_command


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "moa_lit.train", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"run ended (status {proc.returncode}) before the signal: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.05)


def interrupt_after_an_epoch(args: list[str], cwd: Path, last: Path, signum: int) -> tuple[int, str]:
    before = last.stat().st_mtime_ns if last.exists() else None
    proc = start(args, cwd)
    wait_for(lambda: last.exists() and last.stat().st_mtime_ns != before, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_continue_command_quotes_each_argument():
    command = continue_command("moa_lit.train", ["cv.n_folds=2", "data.dir=/my data", "resume=false"], Path("/runs/my run"))
    assert command == "python -m moa_lit.train cv.n_folds=2 'data.dir=/my data' resume=true 'hydra.run.dir=/runs/my run'"
    assert shlex.split(command)[-1] == "hydra.run.dir=/runs/my run"


@pytest.mark.slow
def test_sigint_then_sigterm_then_the_printed_command_finishes_the_run(tmp_path):
    run_dir = tmp_path / "my run"  # a space: the printed command must still paste
    args = [
        *tiny_run_overrides(tmp_path, n_samples=1200, epochs=8, n_scored=20), "model.net.hidden_size=512",
        "num_threads=1", "cv.folds=[0]", f"hydra.run.dir={run_dir}",
    ]
    last = run_files.fold_dir(run_dir, 0, 0) / run_files.LAST_CHECKPOINT

    status, err = interrupt_after_an_epoch(args, tmp_path, last, signal.SIGINT)
    line = err.strip().splitlines()[-1]
    assert status == 130, err[-2000:]
    assert line.startswith("moa-lit: interrupted (SIGINT): ") and "Traceback" not in err
    command = line.split("continue with: ", 1)[1]
    assert command.endswith(" resume=true " + shlex.quote(f"hydra.run.dir={run_dir}"))
    assert last.exists() and not list(run_dir.rglob(f"*{run_files.TEMPORARY_SUFFIX}"))
    assert not (run_dir / run_files.OOF).exists()

    resumed_args = shlex.split(command)[3:]  # after "python -m moa_lit.train"
    status, err = interrupt_after_an_epoch(resumed_args, tmp_path, last, signal.SIGTERM)
    line = err.strip().splitlines()[-1]
    assert status == 143, err[-2000:]
    assert line.startswith("moa-lit: interrupted (SIGTERM): ") and line.split("continue with: ", 1)[1] == command

    proc = start(resumed_args, tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "resuming from" in err + out or (run_dir / run_files.OOF).is_file()
    assert (run_dir / run_files.OOF).is_file() and (run_files.fold_dir(run_dir, 0, 0) / run_files.FOLD_PREDICTIONS).is_file()
