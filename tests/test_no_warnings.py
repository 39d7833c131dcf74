"""A normal run and a normal search print no deprecation or migration
warnings on the pinned Hydra 1.4 / Optuna 5 / SQLAlchemy 2 line, also with
Python's deprecation warnings switched on."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, tiny_run_overrides
from test_hparams_search import search_overrides

WARNING_LINE = re.compile(r"\w*(Deprecation|Migration|Future|User)Warning\b|deprecated", re.IGNORECASE)


def run_with_warnings(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-W", "default::DeprecationWarning", "-W", "default::PendingDeprecationWarning",
         "-W", "default::FutureWarning", "-m", "moa_lit.train", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["run", "search"])
def test_no_deprecation_or_migration_warnings(kind, tmp_path):
    if kind == "run":
        args = [*tiny_run_overrides(tmp_path, n_samples=400, epochs=1), "cv.folds=[0]", "num_threads=1",
                f"hydra.run.dir={tmp_path / 'run'}"]
    else:
        args = [*search_overrides(tmp_path, tmp_path / "sweep", n_trials=1, seed=0), "num_threads=1"]
    proc = run_with_warnings(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if WARNING_LINE.search(line)]
    assert warnings == []
