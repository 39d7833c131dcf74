"""Continuing an interrupted run in its own folder (``resume=true
hydra.run.dir=<run>``): the folder must have been started with the same
settings, finished folds are reused (``fold_predictions``), an unfinished fold
goes on from its ``last.ckpt`` (``cv.py``). Without ``resume=true`` a run never
writes into a folder that already holds a run, so a failing run cannot
overwrite an earlier run's outputs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from moa_lit import run_files
from moa_lit.errors import MoAError
from moa_lit.run_tables import read_run_csv

log = logging.getLogger(__name__)

# Settings that do not change the predictions of a (seed, fold), so they may
# differ between the interrupted run and its resumption (a key and all below it).
MAY_CHANGE_ON_RESUME = (
    "resume",
    "allow_worse_than_prior",  # what is done with the result, not the result
    "seeds",  # finished seeds are reused, new ones are trained
    "cv.folds",
    "num_threads",
    "paths",
    "logger",
    "callbacks.progress_bar",
    "data.use_cache",
    "loader.eval_batch_size",  # prediction batch size: the same probabilities up to rounding
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "optimized_metric",
)


def run_settings(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _may_change(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in MAY_CHANGE_ON_RESUME)


def changed_settings(saved: dict, current: dict) -> list[str]:
    """``key: saved -> current`` for each setting that matters and differs."""
    old, new = _flatten(saved), _flatten(current)
    missing = object()
    return [
        f"{key}: {old.get(key, '(unset)')} -> {new.get(key, '(unset)')}"
        for key in sorted(set(old) | set(new))
        if not _may_change(key) and old.get(key, missing) != new.get(key, missing)
    ]


def holds_a_run(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in (run_files.SETTINGS, run_files.FOLDS, run_files.MODELS))


def prepare_run_dir(cfg: DictConfig, run_dir: Path) -> bool:
    """Check ``run_dir`` may take this run and record its settings; True when
    resuming an earlier run there. Raises MoAError before anything is written
    when it may not."""
    run_dir = Path(run_dir)
    settings_path = run_dir / run_files.SETTINGS
    current = run_settings(cfg)
    if not cfg.get("resume", False):
        if holds_a_run(run_dir):
            raise MoAError(
                f"hydra.run.dir={run_dir} already holds a run; add resume=true to continue it, "
                "or choose a new hydra.run.dir"
            )
        run_files.write_text(OmegaConf.to_yaml(current), settings_path)
        log.info("if this run is interrupted, continue it with the same command plus: resume=true hydra.run.dir=%s", run_dir)
        return False
    if not settings_path.is_file():
        if holds_a_run(run_dir):
            raise MoAError(
                f"resume=true: {run_dir} holds outputs but no {run_files.SETTINGS}, so it cannot be "
                "checked that they were made with these settings; start a new run"
            )
        log.info("resume=true: %s holds no run yet; starting one", run_dir)
        run_files.write_text(OmegaConf.to_yaml(current), settings_path)
        return False
    saved = OmegaConf.to_container(OmegaConf.load(settings_path), resolve=False)
    changed = changed_settings(saved, current)
    if changed:
        shown = "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise MoAError(
            f"resume=true: {run_dir} was run with other settings ({shown}); resume with the settings "
            f"in {settings_path}, or start a new run without resume=true"
        )
    stale = run_files.remove_temporaries(run_dir)
    log.info("resume=true: continuing %s (%d temporary files of the interrupted run removed)", run_dir, len(stale))
    return True


def check_same_folds(run_dir: Path, fold_table: pd.DataFrame) -> None:
    """A resumed run must split the same rows into the same folds as before."""
    path = Path(run_dir) / run_files.FOLDS
    if not path.is_file():
        return
    saved = read_run_csv(path)
    same = list(saved.columns) == list(fold_table.columns) and len(saved) == len(fold_table)
    if same:
        same = all((saved[c].astype(str).to_numpy() == fold_table[c].astype(str).to_numpy()).all() for c in fold_table.columns)
    if not same:
        raise MoAError(
            f"resume=true: the data's rows or fold assignment differ from {path}; "
            "the data changed since the run started: start a new run"
        )
