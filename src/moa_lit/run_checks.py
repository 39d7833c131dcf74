"""Whether a finished run can be trusted, and what would be silently skipped
before it starts. A run whose out-of-fold log loss is worse than the
per-target prior on the same rows, or a stage of a fold whose training loss
rose far above where it started (``train_losses.json``, whatever the logger),
still writes every output, then ends with one line and exit status 3 unless
``allow_worse_than_prior=true``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from moa_lit.errors import MoAError
from moa_lit.runs.run_dir import RunDir
from moa_lit.training.module import peak_lr_setting

log = logging.getLogger("moa_lit.train")

# An epoch's mean training loss this many times its first epoch's: diverged.
DIVERGENCE_FACTOR = 2.0
# OneCycle needs this many optimiser steps; fewer and module.py skips it.
MIN_SCHEDULE_STEPS = 4


class UntrustedRunError(MoAError):
    """The run finished and wrote its outputs, but its result is not to be used."""

    kind = "warning"
    exit_status = 3


def train_batches_per_epoch(n_rows: int, batch_size: int) -> int:
    """As ``datamodule.TensorBatches``: a last batch of one row is dropped."""
    full, rest = divmod(n_rows, batch_size)
    return full + (1 if rest > 1 else 0)


def warn_if_schedule_cannot_run(cfg: DictConfig, train_rows_per_fold: Mapping[int, int]) -> None:
    """Said before training: a OneCycle schedule with fewer than 4 optimiser
    steps in a fold is skipped (the rate stays constant), so
    ``model.scheduler.max_lr`` would have no effect."""
    scheduler = OmegaConf.select(cfg, "model.scheduler", default=None)
    if not scheduler or "pct_start" not in scheduler or not train_rows_per_fold:
        return
    batch_size, epochs = int(cfg.loader.batch_size), int(cfg.trainer.max_epochs)
    fold, rows = min(train_rows_per_fold.items(), key=lambda item: item[1])
    batches = train_batches_per_epoch(rows, batch_size)
    steps = batches * epochs
    if steps < MIN_SCHEDULE_STEPS:
        log.warning(
            "fold %s trains only %d optimiser steps (%d batches of loader.batch_size=%s x trainer.max_epochs=%s); the "
            "OneCycle schedule needs %d and is skipped, so the rate stays model.optimizer.lr=%s and "
            "model.scheduler.max_lr has no effect; raise trainer.max_epochs or lower loader.batch_size",
            fold, steps, batches, batch_size, epochs, MIN_SCHEDULE_STEPS, cfg.model.optimizer.lr,
        )


STAGE_NAMES = {"pretrain": "pretraining", "stack": "stacked features", "scored": ""}


def _rose(losses: pd.Series, start: float | None = None) -> str | None:
    """How an epoch's mean training loss rose above DIVERGENCE_FACTOR x the loss
    where training started (its first batch, before any update), or a later
    epoch's above that x the first epoch's; None when it did not."""
    first = losses.iloc[0] if len(losses) else np.nan
    if start is not None and np.isfinite(start) and start > 0 and len(losses) and losses.max() > DIVERGENCE_FACTOR * start:
        peak, reference, when = losses, float(start), "at the start"
    elif len(losses) >= 2 and np.isfinite(first) and first > 0 and losses.iloc[1:].max() > DIVERGENCE_FACTOR * first:
        peak, reference, when = losses.iloc[1:], float(first), f"at epoch {int(losses.index[0])}"
    else:
        return None
    return f"training loss {peak.max():.4g} at epoch {int(peak.idxmax())}, {reference:.4g} {when}"


def diverged_stages(run_dir: Path, seeds: list[int], fold_ids: list[int]) -> list[tuple[str, str]]:
    """(stage, description) of every stage of a (seed, fold) whose training loss
    rose (:func:`_rose`); stage is ``scored``, ``pretrain`` or ``stack inner fold <k>``.
    The losses are ``train_losses.json``'s (recorded whatever the logger), else
    the CSV logger's ``metrics.csv`` (runs made before it)."""
    run, found = RunDir(run_dir), []
    for seed in seeds:
        for fold in fold_ids:
            recorded = run.fold(seed, fold).train_losses() or {"scored": {"epochs": run.epoch_train_losses(seed, fold)}}
            for stage, losses in recorded.items():
                rose = _rose(pd.Series(losses.get("epochs", []), dtype=float), losses.get("start"))
                if rose is not None:
                    name = stage if stage.startswith("stack ") else STAGE_NAMES.get(stage, stage)
                    found.append((stage, f"seed {seed} fold {fold}{' ' + name if name else ''} diverged ({rose})"))
    return found


def rate_setting(cfg: DictConfig, stage: str = "scored") -> str:
    """The setting that sets a stage's peak rate, with its value: pretrain.lr /
    stack.lr when set, else the model's (:func:`peak_lr_setting`: OneCycle's
    ``model.scheduler.max_lr`` when there is one, else ``model.optimizer.lr``)."""
    key = stage.split(" ", 1)[0]
    lr = OmegaConf.select(cfg, f"{key}.lr", default=None) if key in ("pretrain", "stack") else None
    if lr is not None:
        return f"{key}.lr={lr}"
    name = peak_lr_setting(cfg.model.get("scheduler"))
    return f"{name}={OmegaConf.select(cfg, name, default=None)}"


def untrusted_reasons(cfg: DictConfig, scores: Mapping[str, Any], run_dir: Path, seeds: list[int], fold_ids: list[int]) -> list[str]:
    """Why the run's result should not be used (empty: nothing found)."""
    reasons = []
    settings = []
    diverged = diverged_stages(run_dir, seeds, fold_ids)
    if diverged:
        stage, text = diverged[0]
        more = len(diverged) - 1
        reasons.append(text + (f" (and {more} more stage{'s' if more > 1 else ''} or fold{'s' if more > 1 else ''})" if more else ""))
        settings.append(rate_setting(cfg, stage))
    oof, prior = scores["oof_logloss"], scores["prior_logloss"]
    if not oof <= prior:  # NaN counts as worse
        reasons.append(f"OOF log loss {oof:.5f} is worse than the prior's {prior:.5f} on the same {scores['n_rows']} rows")
        settings.append(rate_setting(cfg))
    if reasons:
        reasons.append(f"lower {' / '.join(dict.fromkeys(settings))} or train longer")
    return reasons


def end_untrusted_run(reasons: list[str], run_dir: Path, allowed: bool, log) -> None:
    """A run that should not be trusted ends with its one line (exit 3) unless
    allowed; in a search trial the sweeper records its value and the log says why."""
    if not reasons or allowed:
        return
    from moa_lit.search import failures_go_to_sweeper

    error = UntrustedRunError(
        "this run should not be trusted: " + "; ".join(reasons) + f"; outputs kept in {run_dir}; "
        "allow_worse_than_prior=true accepts it"
    )
    if not failures_go_to_sweeper():
        raise error
    log.warning("%s", error)
