"""Cross-validation around Lightning: for each seed and fold, fit the fold's
features, train, keep the best epoch, predict the fold's validation rows
(out-of-fold) and the test rows. Control rows are predicted exactly 0.

With ``resume=true`` a fold whose predictions are on disk is not trained again,
and a fold interrupted mid-training goes on from its ``last.ckpt``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from moa_lit import run_files
from moa_lit.callbacks import SeedEachEpoch, StopOnNonFiniteLoss
from moa_lit.checkpoint_io import AtomicCheckpointIO
from moa_lit.datamodule import MoADataModule
from moa_lit.devices import PeakGpuMemory, training_device
from moa_lit.errors import MoAError
from moa_lit.fold_predictions import FoldPredictions, fold_finished, load_fold_predictions, save_fold_predictions
from moa_lit.resources import out_of_memory_as_user_error
from moa_lit.stages import check_stage_settings, fit_fold, peak_lr_setting
from moa_lit.timing import PhaseTimer

log = logging.getLogger(__name__)


@dataclass
class CVPredictions:
    oof: np.ndarray  # rows x targets; NaN on rows of folds that were not run
    test: np.ndarray | None  # test rows x targets, averaged over seeds and folds
    fold_summaries: list[dict] = field(default_factory=list)


def _trainer(cfg: DictConfig, fold_path: Path, run_dir: Path, seed: int, fold: int, extra_callbacks=()):
    callbacks = [
        StopOnNonFiniteLoss(label=f"seed {seed} fold {fold}", rate_setting=peak_lr_setting(cfg.model)),
        SeedEachEpoch(seed, fold),
        *extra_callbacks,
    ]
    checkpoint = None
    for name, cb_cfg in (cfg.get("callbacks") or {}).items():
        if cb_cfg is None:
            continue
        if name == "model_checkpoint":
            checkpoint = instantiate(cb_cfg, dirpath=str(fold_path))
            callbacks.append(checkpoint)
        else:
            callbacks.append(instantiate(cb_cfg))
    logger = False
    if cfg.get("logger"):
        logger = instantiate(
            cfg.logger, save_dir=str(run_dir / run_files.LOGS), name="", version=f"seed{seed}_fold{fold}"
        )
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=logger,
        default_root_dir=str(fold_path),
        plugins=[AtomicCheckpointIO()],
    )
    return trainer, checkpoint


def _resume_checkpoint(fold_path: Path, resume: bool) -> str | None:
    """The checkpoint an interrupted fold goes on from, if any."""
    last = fold_path / run_files.LAST_CHECKPOINT
    return str(last) if resume and last.is_file() else None


def _memory_settings(cfg: DictConfig) -> dict:
    return {
        "loader.batch_size": cfg.loader.batch_size,
        "loader.eval_batch_size": cfg.loader.eval_batch_size,
        "model.net.hidden_size": cfg.model.get("net", {}).get("hidden_size"),
    }


def prediction_clip(cfg: DictConfig) -> tuple[float, float] | None:
    """``predict.clip=[lo, hi]``: written (and scored) predictions are clipped,
    which bounds the metric's penalty for a confident miss; controls stay 0."""
    clip = (cfg.get("predict") or {}).get("clip")
    if clip is None:
        return None
    values = list(clip) if OmegaConf.is_list(clip) or isinstance(clip, (list, tuple)) else None
    if not values or len(values) != 2 or not 0.0 <= float(values[0]) < float(values[1]) <= 1.0:
        raise MoAError(f"predict.clip={clip}: expected [lo, hi] with 0 <= lo < hi <= 1, e.g. [0.0005, 0.999]")
    return float(values[0]), float(values[1])


def cross_validate(
    cfg: DictConfig,
    features: pd.DataFrame,
    targets: np.ndarray,
    is_control: np.ndarray,
    folds: np.ndarray,
    fold_ids: list[int],
    genes: list[str],
    cells: list[str],
    run_dir: Path,
    timer: PhaseTimer,
    test_features: pd.DataFrame | None = None,
    test_is_control: np.ndarray | None = None,
    nonscored: np.ndarray | None = None,
    drug: np.ndarray | None = None,
) -> CVPredictions:
    n_rows, n_targets = targets.shape
    check_stage_settings(cfg, nonscored)
    clip = prediction_clip(cfg)
    seeds = list(cfg.seeds)
    device = training_device(cfg.trainer)
    dm = MoADataModule(
        features,
        targets,
        folds,
        is_control,
        genes,
        cells,
        feature_params=OmegaConf.to_container(cfg.features, resolve=True),
        batch_size=cfg.loader.batch_size,
        eval_batch_size=cfg.loader.eval_batch_size,
        device=device,
    )
    oof = np.full((n_rows, n_targets), np.nan)
    oof_sum = np.zeros((n_rows, n_targets))
    test_sum = None if test_features is None else np.zeros((len(test_features), n_targets))
    summaries = []

    resume = bool(cfg.get("resume", False))
    for seed in seeds:
        for fold in fold_ids:
            label = f"seed {seed} fold {fold}"
            fold_path = run_files.fold_dir(run_dir, seed, fold)
            if resume and fold_finished(fold_path):
                saved = load_fold_predictions(
                    fold_path,
                    expected_val_rows=dm.val_rows(fold),
                    n_test=None if test_features is None else len(test_features),
                    n_targets=n_targets,
                    label=label,
                )
                _add_fold_predictions(saved, oof_sum, test_sum)
                summaries.append(_summary_from_fold_info(fold_path))
                log.info("%s: finished before, predictions reused from %s", label, fold_path / run_files.FOLD_PREDICTIONS)
                continue
            with out_of_memory_as_user_error(label, _memory_settings(cfg)):
                preds, summary = _train_fold(
                    cfg, dm, seed, fold, fold_path, run_dir, timer, test_features, resume, nonscored, drug
                )
            _add_fold_predictions(preds, oof_sum, test_sum)
            summaries.append(summary)

    run_rows = np.isin(folds, fold_ids)
    oof[run_rows] = oof_sum[run_rows] / len(seeds)
    if clip is not None:
        oof[run_rows] = np.clip(oof[run_rows], *clip)
    oof[run_rows & is_control] = 0.0  # controls have no MoA by definition
    test = None
    if test_sum is not None:
        test = test_sum / (len(seeds) * len(fold_ids))
        if clip is not None:
            test = np.clip(test, *clip)
        if test_is_control is not None:
            test[test_is_control] = 0.0
    return CVPredictions(oof=oof, test=test, fold_summaries=summaries)


def _add_fold_predictions(preds: FoldPredictions, oof_sum: np.ndarray, test_sum: np.ndarray | None) -> None:
    oof_sum[preds.val_rows] += preds.oof
    if test_sum is not None:
        test_sum += preds.test


def _summary_from_fold_info(fold_path: Path) -> dict:
    info = run_files.read_json(fold_path / run_files.FOLD_INFO)
    return {
        "seed": info["seed"],
        "fold": info["fold"],
        "best_epoch": info["best_epoch"],
        "val_logloss_treated": info["best_val_logloss_treated"],
        "seconds": info.get("seconds"),
        "peak_gpu_memory_mb": info.get("peak_gpu_memory_mb"),
    }


def _train_fold(cfg, dm, seed, fold, fold_path, run_dir, timer, test_features, resume, nonscored, drug):
    """Train one (seed, fold), predict, and write its files; predictions last."""
    t0 = time.perf_counter()
    fold_path.mkdir(parents=True, exist_ok=True)
    with PeakGpuMemory(dm.device).measure() as peak:
        preds, fitted = _fit_and_predict(cfg, dm, seed, fold, fold_path, run_dir, timer, test_features, resume, nonscored, drug)
    best_epoch, best_score = fitted.best_epoch, fitted.best_score
    val_idx = preds.val_rows
    summary = {
        "seed": seed,
        "fold": fold,
        "best_epoch": best_epoch,
        "val_logloss_treated": best_score,
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_gpu_memory_mb": peak.megabytes,
    }
    with timer("writing"):
        run_files.write_joblib(dm.preprocessor, fold_path / run_files.PREPROCESSOR)
        run_files.write_json(
            {
                "seed": seed,
                "fold": fold,
                "best_epoch": best_epoch,
                "best_val_logloss_treated": best_score,
                "n_features": fitted.module.hparams.n_features,
                "n_train_rows": len(dm.train_rows(fold)),
                "n_val_rows": len(val_idx),
                "seconds": summary["seconds"],
                "device": str(dm.device),
                "peak_gpu_memory_mb": peak.megabytes,
                **fitted.stages,
            },
            fold_path / run_files.FOLD_INFO,
        )
        # Last: its presence marks the fold finished for resume=true.
        save_fold_predictions(fold_path, preds, label=f"seed {seed} fold {fold}")
        # Only an unfinished fold needs it; best.ckpt stays for prediction.
        (fold_path / run_files.LAST_CHECKPOINT).unlink(missing_ok=True)
    log.info(
        "seed %d fold %d: best epoch %s, validation log loss %.5f (treated rows), %.1f s",
        seed, fold, best_epoch, best_score if best_score is not None else float("nan"), summary["seconds"],
    )
    return preds, summary


def _fit_and_predict(cfg, dm, seed, fold, fold_path, run_dir, timer, test_features, resume, nonscored, drug):
    """Features, training and prediction of one (seed, fold), all on the fold's device."""
    with timer("features"):
        dm.set_fold(fold, seed=seed)
    ckpt_path = _resume_checkpoint(fold_path, resume)
    if ckpt_path:
        log.info("seed %d fold %d: resuming from %s", seed, fold, ckpt_path)
    with timer("training"):
        fitted = fit_fold(
            cfg, dm, fold, seed, fold_path,
            make_trainer=partial(_trainer, cfg, fold_path, run_dir, seed, fold),
            nonscored=nonscored, drug=drug, ckpt_path=ckpt_path,
        )
    with timer("prediction"):
        val_idx = dm.val_rows(fold)
        preds = FoldPredictions(
            val_rows=val_idx,
            oof=fitted.predict_proba(dm.tensors.x_val),
            test=None if test_features is None else fitted.predict_proba(dm.transform(test_features)),
        )
    return preds, fitted
