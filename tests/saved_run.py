"""One tiny training run shared by the predict and report tests (trained once per
test session), and the features reader those tests call predict with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import REPO, run_cli, tiny_run_overrides
from moa_lit import schema
from moa_lit.data import reader
from moa_lit.errors import MoAError

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


# TEMPORARY until moa_lit.data.reader.read_features lands (the reader branch): a
# minimal stand-in with the same signature, reading like the stub's read_dataset
# so training and predict see the same floats. Delete once the real one exists.
def _fallback_read_features(path, layout, *, role=None):
    path = Path(path)
    role = role or path.name
    frame = pd.read_csv(path, engine="pyarrow")
    missing = [c for c in layout.columns if c not in frame.columns]
    unexpected = [c for c in frame.columns if c not in layout.columns]
    if missing or unexpected:
        raise MoAError(f"{role}: header does not match the expected columns: missing {missing[:5]}; unexpected {unexpected[:5]}")
    return frame[layout.columns]


HAS_READ_FEATURES = hasattr(reader, "read_features")


def use_read_features(monkeypatch) -> None:
    if not HAS_READ_FEATURES:
        monkeypatch.setattr(reader, "read_features", _fallback_read_features, raising=False)


def run_predict_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m moa_lit.predict args`` as a user runs it (with the stand-in reader
    patched in first while the real one is missing)."""
    if HAS_READ_FEATURES:
        return run_cli("moa_lit.predict", args, cwd=cwd)
    code = (
        "import sys, runpy; sys.path.insert(0, %r); import saved_run; from moa_lit.data import reader; "
        "reader.read_features = saved_run._fallback_read_features; "
        "runpy.run_module('moa_lit.predict', run_name='__main__', alter_sys=True)" % str(REPO / "tests")
    )
    return run_cli_code(code, args, cwd)


def run_cli_code(code: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
