"""A run folder from a stranger is input, not code (issue 20, point 3):
``predict`` reads the fitted preprocessing with skops.io and a list of
trusted types, and the networks with ``torch.load(weights_only=True)``. A
malicious pickle planted wherever a pickle could be read, and a malicious
skops file, are refused with one line and run nothing; each planted file is
first shown to run its code when loaded the unsafe way."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import skops.io as sio
import torch
from omegaconf import OmegaConf

from moa_lit.errors import MoAError
from moa_lit.predict import predict
from moa_lit.runs import files as run_files
from saved_run import trained_run


class OpensAFile:
    """Unpickled, it creates ``marker`` (what any code could do instead)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class SetsState:
    """Loaded by skops.io as a trusted type, its ``__setstate__`` creates the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict) -> None:
        open(state["marker"], "w").close()
        self.__dict__.update(state)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return trained_run(tmp_path_factory)


def _plant_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(OpensAFile(marker)))


def _plant_torch(path: Path, marker: Path) -> None:
    torch.save({"state_dict": OpensAFile(marker)}, path)


def _plant_skops(path: Path, marker: Path) -> None:
    path.write_bytes(sio.dumps(SetsState(marker)))


def _unsafe_load(kind: str, path: Path):
    if kind == "skops":
        return sio.load(path, trusted=[f"{__name__}.SetsState"])
    if kind == "torch":
        return torch.load(path, weights_only=False)
    return pickle.loads(path.read_bytes())


PLANTS = {
    "preprocessor as a pickle": (run_files.PREPROCESSOR, _plant_pickle, "pickle"),
    "preprocessor as skops": (run_files.PREPROCESSOR, _plant_skops, "skops"),
    "checkpoint": (run_files.BEST_CHECKPOINT, _plant_torch, "torch"),
    "stacked models": (run_files.STACK_MODELS, _plant_torch, "torch"),
}


@pytest.mark.parametrize("where", sorted(PLANTS))
def test_predict_on_a_strangers_run_folder_runs_no_code(saved, tmp_path, where):
    run_dir, data_dir = saved
    name, plant, kind = PLANTS[where]
    stranger = shutil.copytree(run_dir, tmp_path / "stranger")
    marker = tmp_path / "code-ran"

    control = tmp_path / "control.bin"
    plant(control, marker)
    _unsafe_load(kind, control)  # the planted file really runs code when loaded unsafely
    assert marker.exists()
    marker.unlink()

    for fold_dir in (stranger / run_files.MODELS).glob("seed*/fold*"):
        plant(fold_dir / name, marker)
    settings = {"run_dir": str(stranger), "input": str(data_dir / "test_features.csv"),
                "output": str(tmp_path / "out.csv"), "top_k": 0, "num_threads": 1}
    with pytest.raises(MoAError, match=rf"{name}: cannot be loaded \("):
        predict(OmegaConf.create(settings))
    assert not marker.exists()
    assert not (tmp_path / "out.csv").exists()


def test_load_run_in_a_plain_python_process_builds_no_target_a_checkpoint_names(saved, tmp_path):
    """A checkpoint's hyperparameters are input too: their ``net._target_``
    naming any callable must not be built by ``moa_lit.load_run`` in a
    notebook (no command, so no Hydra job to set the allow-list)."""
    import os
    import subprocess
    import sys

    run_dir, _ = saved
    stranger = shutil.copytree(run_dir, tmp_path / "stranger")
    marker = tmp_path / "code-ran"
    (tmp_path / "evil.py").write_text(f"def run(**kwargs):\n    open({str(marker)!r}, 'w').close()\n")
    for ckpt in (stranger / run_files.MODELS).glob(f"seed*/fold*/{run_files.BEST_CHECKPOINT}"):
        state = torch.load(ckpt, weights_only=True)
        state["hyper_parameters"]["net"] = {"_target_": "evil.run"}
        torch.save(state, ckpt)
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(tmp_path)])}

    def python(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)

    control = python("from hydra.utils import instantiate; instantiate({'_target_': 'evil.run'}, n_features=1, n_targets=1)")
    assert marker.exists(), control.stderr[-2000:]  # built without an allow-list, the target runs
    marker.unlink()
    done = python(f"import moa_lit\ntry:\n    moa_lit.load_run({str(stranger)!r})\nexcept moa_lit.MoAError as err:\n    print('refused:', err)\n")
    assert "refused: " in done.stdout and "best.ckpt: cannot be loaded" in done.stdout, done.stdout + done.stderr[-2000:]
    assert not marker.exists()
