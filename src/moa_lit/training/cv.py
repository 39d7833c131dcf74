"""Cross-validation around Lightning: for each fold and seed, fit the fold's
features, train, keep the best epoch, predict the fold's validation and test
rows. With ``resume=true`` a fold whose predictions are on disk is not trained
again, and a fold interrupted mid-training goes on from its ``last.ckpt``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import lightning as L
import numpy as np
import pandas as pd

from moa_lit.devices import PeakGpuMemory
from moa_lit.runs.run_dir import FoldDir, FoldPredictions, RunDir
from moa_lit.training.callbacks import SeedEachEpoch, StopOnNonFiniteLoss
from moa_lit.training.checkpoint_io import AtomicCheckpointIO, read_checkpoint
from moa_lit.training.datamodule import MoADataModule
from moa_lit.training.final_model import mean_probabilities
from moa_lit.training.resources import out_of_memory_as_user_error
from moa_lit.training.stages import FoldPlan, fit_fold
from moa_lit.timing import PhaseTimer

log = logging.getLogger(__name__)

CHECKPOINT_CALLBACK = "model_checkpoint"  # the callbacks entry that keeps the best epoch


@dataclass
class CVPredictions:
    oof: np.ndarray  # rows x targets; NaN on rows of folds that were not run
    test: np.ndarray | None  # test rows x targets, averaged over seeds and folds
    fold_summaries: list[dict] = field(default_factory=list)


@dataclass
class FoldTrainers:
    """Each fold's Lightning Trainer from the config's factories (Hydra ``_partial_``):
    the trainer, the callbacks by name (the checkpoint's gets the fold's folder), the logger."""

    new_trainer: Callable[..., L.Trainer]
    callbacks: dict[str, Callable] = field(default_factory=dict)
    new_logger: Callable | None = None

    def __call__(self, run: RunDir, fold_dir: FoldDir, extra_callbacks=()):
        seed, fold = fold_dir.seed, fold_dir.fold
        built = {
            name: make(dirpath=str(fold_dir.path)) if name == CHECKPOINT_CALLBACK else make()
            for name, make in self.callbacks.items()
        }
        logger = False
        if self.new_logger is not None:
            logger = self.new_logger(save_dir=str(run.logs), name="", version=run.log_version(seed, fold))
        trainer = self.new_trainer(
            callbacks=[
                StopOnNonFiniteLoss(label=fold_dir.label), SeedEachEpoch(seed, fold), *extra_callbacks, *built.values()
            ],
            logger=logger,
            default_root_dir=str(fold_dir.path),
            plugins=[AtomicCheckpointIO()],
        )
        return trainer, built.get(CHECKPOINT_CALLBACK)


@dataclass
class TestRows:
    features: pd.DataFrame
    is_control: np.ndarray


@dataclass
class CrossValidation:
    """One run's seed x fold loop, with what every fold needs (built by ``train.py``)."""

    dm: MoADataModule
    run: RunDir
    plan: FoldPlan
    trainers: FoldTrainers
    timer: PhaseTimer
    test: TestRows | None = None
    nonscored: np.ndarray | None = None  # auxiliary targets of the stages
    drug: np.ndarray | None = None  # the inner folds of the stacked stage keep drugs whole
    resume: bool = False

    def run_folds(self, seeds: list[int], fold_ids: list[int], clip: tuple[float, float] | None = None) -> CVPredictions:
        dm, test = self.dm, self.test
        n_rows, n_targets = dm.targets.shape
        self.plan.check(self.nonscored)
        oof = np.full((n_rows, n_targets), np.nan)
        oof_sum = np.zeros((n_rows, n_targets))
        test_sum = None if test is None else np.zeros((len(test.features), n_targets))
        summaries = []
        # What an out-of-memory error names to lower, with their values.
        sizes = {
            "loader.batch_size": dm.batch_size,
            "loader.eval_batch_size": dm.eval_batch_size,
            "model.net.hidden_size": (self.plan.new_model.keywords.get("net") or {}).get("hidden_size"),
        }

        # Folds outside, seeds inside: a fold's features are fitted once and
        # reused by each seed (MoADataModule.set_fold), one fold in memory at a time.
        for fold in fold_ids:
            for seed in seeds:
                fold_dir = self.run.fold(seed, fold)
                if self.resume and fold_dir.finished():
                    preds = fold_dir.load_predictions(
                        expected_val_rows=dm.val_rows(fold),
                        n_test=None if test is None else len(test.features),
                        n_targets=n_targets,
                    )
                    log.info("%s: finished before, predictions reused from %s", fold_dir.label, fold_dir.predictions_file)
                else:
                    with out_of_memory_as_user_error(fold_dir.label, sizes):
                        preds = self._train_fold(fold_dir)
                oof_sum[preds.val_rows] += preds.oof
                if test_sum is not None:
                    test_sum += preds.test
                summaries.append(fold_dir.summary())

        # The final model's rule on both: a row's OOF value is the mean over seeds of
        # its fold's models, a test row's the mean over every seed x fold model.
        run_rows = np.isin(dm.folds, fold_ids)
        oof[run_rows] = mean_probabilities(oof_sum[run_rows], len(seeds), clip, dm.is_control[run_rows])
        test_pred = None
        if test_sum is not None:
            test_pred = mean_probabilities(test_sum, len(seeds) * len(fold_ids), clip, test.is_control)
        return CVPredictions(oof=oof, test=test_pred, fold_summaries=summaries)

    def _train_fold(self, fold_dir: FoldDir) -> FoldPredictions:
        """Features, training and prediction of one (seed, fold), all on the
        fold's device; then its files, predictions last."""
        dm, run, seed, fold = self.dm, self.run, fold_dir.seed, fold_dir.fold
        t0 = time.perf_counter()
        fold_dir.path.mkdir(parents=True, exist_ok=True)
        with PeakGpuMemory(dm.device).measure() as peak:
            with self.timer("features"):
                dm.set_fold(fold, seed=seed)
            ckpt_path = fold_dir.resume_checkpoint() if self.resume else None
            if ckpt_path:
                log.info("%s: resuming from %s", fold_dir.label, ckpt_path)
                run.keep_earlier_epochs(seed, fold, int(read_checkpoint(ckpt_path)["epoch"]))
            with self.timer("training"):
                fitted = fit_fold(
                    self.plan, dm, fold, seed, fold_dir,
                    make_trainer=partial(self.trainers, run, fold_dir),
                    nonscored=self.nonscored, drug=self.drug, ckpt_path=None if ckpt_path is None else str(ckpt_path),
                )
            run.join_earlier_epochs(seed, fold)
            with self.timer("prediction"):
                preds = FoldPredictions(
                    val_rows=dm.val_rows(fold),
                    oof=fitted.predict_features(dm.tensors.x_val),
                    test=None if self.test is None else fitted.predict(self.test.features),
                )
        seconds = round(time.perf_counter() - t0, 2)
        with self.timer("writing"):
            fitted.save(fold_dir)
            fold_dir.write_info(
                {
                    "seed": seed,
                    "fold": fold,
                    "best_epoch": fitted.best_epoch,
                    "best_val_logloss": fitted.best_score,  # of the rows that chose it (MoADataModule.val_batches)
                    "n_features": fitted.module.hparams.n_features,
                    "n_train_rows": len(dm.train_rows(fold)),
                    "n_val_rows": len(preds.val_rows),
                    "seconds": seconds,
                    "device": str(dm.device),
                    "peak_gpu_memory_mb": peak.megabytes,
                    **fitted.stages,
                }
            )
            # Last: its presence marks the fold finished for resume=true.
            fold_dir.save_predictions(preds)
            fold_dir.drop_last_checkpoint()
        log.info(
            "%s: best epoch %s, validation log loss %.5f (new-drug rows, else treated rows), %.1f s",
            fold_dir.label, fitted.best_epoch,
            fitted.best_score if fitted.best_score is not None else float("nan"), seconds,
        )
        return preds
