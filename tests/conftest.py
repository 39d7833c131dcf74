from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _pin_xdist_worker() -> None:
    """Under pytest-xdist (``-n``), each worker gets its own share of this
    process's cores, before torch is imported: two training processes on the
    same cores run about 15x slower, not 2x. moa-lit's automatic thread count
    and every command a test starts read the affinity mask, so they follow."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and count.isdigit() and hasattr(os, "sched_setaffinity")):
        return
    cores = sorted(os.sched_getaffinity(0))
    mine = cores[int(worker[2:]) :: int(count)] or cores
    os.sched_setaffinity(0, mine)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(len(mine))


_pin_xdist_worker()


@pytest.fixture(scope="session", autouse=True)
def allowed_targets():
    """Tests that call train() and friends in-process build objects under the
    same allow-list as the commands (hydra.main(execution_whitelist=...))."""
    from hydra.utils import execution_whitelist

    from moa_lit.targets import ALLOWED_TARGETS

    with execution_whitelist(ALLOWED_TARGETS):
        yield


def shared_labels_dir() -> Path | None:
    """The real lish-moa label files beside the checkout (never copied into it)."""
    base = Path(os.environ.get("MOA_SHARED_DIR", REPO.parent / "shared"))
    d = base / "data" / "lish-moa-labels"
    return d if (d / "train_targets_scored.csv.zip").is_file() else None


@pytest.fixture
def real_labels_dir() -> Path:
    d = shared_labels_dir()
    if d is None:
        pytest.skip("real lish-moa label files not found in ../shared/data/lish-moa-labels")
    return d


def tiny_run_overrides(tmp_path: Path, n_samples: int = 600, epochs: int = 2, n_scored: int = 206) -> list[str]:
    """A run small enough for the test suite: tiny synthetic data, 2 folds, a narrow net.

    With a few hundred rows most of the 206 targets have one or two drugs; tests
    that need a learnable signal pass a smaller ``n_scored``.
    """
    return [
        f"data.n_samples={n_samples}",
        f"data.n_scored={n_scored}",
        f"data.dir={tmp_path / 'data'}",
        "cv.n_folds=2",
        f"trainer.max_epochs={epochs}",
        "model.net.hidden_size=64",
        "loader.batch_size=64",
        "callbacks.progress_bar.refresh_rate=0",
        # Two epochs on a few hundred rows can score about the prior; the
        # trust check (run_checks.py) has tests of its own.
        "allow_worse_than_prior=true",
    ]


def run_cli(module: str, args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` as a user would, importing this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def compose_train(overrides):
    """The training config composed as the command line would, for in-process runs."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from moa_lit.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR):
            return compose(config_name="train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
