"""One tiny training run shared by the predict and report tests (trained once per
test session), and the features reader those tests call predict with."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import run_cli, tiny_run_overrides
from moa_lit import schema

_RUNS: dict[str, tuple[Path, Path]] = {}


def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run_dir, data_dir) of a 2-seed x 2-fold, 3-epoch run on 600 synthetic rows
    (two seeds, so predict's average over seeds is checked against training's)."""
    if "tiny" not in _RUNS:
        tmp = tmp_path_factory.mktemp("saved-run")
        run_dir = tmp / "run"
        proc = run_cli("moa_lit.train", [*tiny_run_overrides(tmp, n_samples=600, epochs=3), "seeds=[0,1]", f"hydra.run.dir={run_dir}"], cwd=tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        data_dir = next(d for d in (tmp / "data").iterdir() if (d / schema.TEST_FEATURES).is_file())
        _RUNS["tiny"] = (run_dir, data_dir)
    return _RUNS["tiny"]


def run_predict_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m moa_lit.predict args`` as a user runs it."""
    return run_cli("moa_lit.predict", args, cwd=cwd)
