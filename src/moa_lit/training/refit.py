"""Final models refitted on every training row (``final_model=refit|both``;
docs/runs.md), for the median over folds of the epochs each fold took to
reach its best epoch (x ``refit.epoch_scale``). The schedule keeps its shape
(OneCycle over the refit's epochs); with K folds each refit epoch already has
K/(K-1) times a fold's optimiser steps, so the default scale is 1. Each
refitted model has a fold model's files in ``models/refit/seed<s>/``, so
``predict`` loads it like one and a resumed run reuses a finished one."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import lightning as L
import numpy as np

from moa_lit.errors import MoAError
from moa_lit.runs.run_dir import FoldPredictions, RunDir
from moa_lit.settings import AuxiliaryStage
from moa_lit.training.datamodule import MoADataModule
from moa_lit.training.final_model import mean_probabilities
from moa_lit.training.fold_predictor import FoldPredictor
from moa_lit.training.stages import FoldPlan, train_without_validation

log = logging.getLogger(__name__)


@dataclass
class RefitResult:
    test: np.ndarray | None  # test rows x targets, mean over refit seeds (clipped, controls 0)
    summary: dict


def refit_epochs(best_epochs: list, epoch_scale: float) -> int:
    """Epochs of a refitted model: the median over folds of the epochs it took
    to reach the best one (a checkpoint's epoch counts from 0) x the scale."""
    counts = [int(b) + 1 for b in best_epochs if b is not None]
    if not counts:
        raise MoAError(
            "final_model=refit: no fold recorded a best epoch, so the number of epochs cannot be chosen; "
            "keep callbacks.model_checkpoint on, or use final_model=fold_average"
        )
    return max(1, int(round(float(np.median(counts)) * float(epoch_scale))))


def check_refit_possible(final_model: str, pretrain_enabled: bool, stack_enabled: bool, folds_subset: bool) -> None:
    """Combinations refitting does not handle, refused before any training."""
    if final_model == "fold_average":
        return
    if pretrain_enabled or stack_enabled:
        stage = "pretrain" if pretrain_enabled else "stack"
        raise MoAError(
            f"final_model={final_model} with {stage}.enabled=true: refitting trains the scored model only; "
            f"use final_model=fold_average, or {stage}.enabled=false"
        )
    if folds_subset:
        raise MoAError(
            f"final_model={final_model} with cv.folds set: the refit's epochs are chosen over all folds; "
            "run every fold (cv.folds=null), or use final_model=fold_average"
        )


def refit_final_models(
    plan: FoldPlan,
    dm: MoADataModule,
    run: RunDir,
    seeds: list[int],
    epochs: int,
    test_features=None,
    test_is_control: np.ndarray | None = None,
    clip: tuple[float, float] | None = None,
    resume: bool = False,
) -> RefitResult:
    """Train (or, resuming, reuse) one model per seed on every treated row."""
    n_targets = dm.targets.shape[1]
    n_test = None if test_features is None else len(test_features)
    test_sum = None if test_features is None else np.zeros((n_test, n_targets))
    n_rows = int((~dm.is_control).sum())
    for seed in seeds:
        refit_dir = run.refit(seed)
        if resume and refit_dir.finished():
            saved = refit_dir.load_predictions(np.zeros(0, dtype=np.int64), n_test, n_targets)
            if refit_dir.read_info().get("epochs") != epochs:
                raise MoAError(f"{refit_dir.info_file}: refitted for other epochs than {epochs}; start a new run")
            log.info("%s: finished before, reused from %s", refit_dir.label, refit_dir.path)
        else:
            t0 = time.perf_counter()
            refit_dir.path.mkdir(parents=True, exist_ok=True)
            dm.set_all_rows(seed=seed)
            L.seed_everything(seed, workers=False, verbose=False)
            module = train_without_validation(
                plan, AuxiliaryStage(max_epochs=epochs), dm, dm.tensors.x_train, dm.targets[~dm.is_control],
                label=refit_dir.label, root=refit_dir, stage="refit", checkpoint=refit_dir.best_checkpoint,
            )
            predictor = FoldPredictor(preprocessor=dm.preprocessor, module=module, where=str(refit_dir.path), seed=seed)
            predictor.save(refit_dir)
            saved = FoldPredictions(
                val_rows=np.zeros(0, dtype=np.int64),
                oof=np.zeros((0, n_targets)),
                test=None if test_features is None else predictor.predict(test_features),
            )
            refit_dir.write_info(
                {"seed": seed, "epochs": epochs, "n_train_rows": n_rows, "seconds": round(time.perf_counter() - t0, 2)}
            )
            refit_dir.save_predictions(saved)  # last: marks it finished
            log.info("%s: %d epochs on %d rows, %.1f s", refit_dir.label, epochs, n_rows, time.perf_counter() - t0)
        if test_sum is not None:
            test_sum += saved.test
    test = None if test_sum is None else mean_probabilities(test_sum, len(seeds), clip, test_is_control)
    summary = {"epochs": epochs, "seeds": list(seeds), "n_train_rows": n_rows}
    return RefitResult(test=test, summary=summary)
