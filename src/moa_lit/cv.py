"""Cross-validation around Lightning: for each seed and fold, fit the fold's
features, train, keep the best epoch, predict the fold's validation rows
(out-of-fold) and the test rows. Control rows are predicted exactly 0."""

from __future__ import annotations

import logging
import time
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from moa_lit import run_files
from moa_lit.callbacks import StopOnNonFiniteLoss
from moa_lit.datamodule import MoADataModule
from moa_lit.errors import MoAError
from moa_lit.stages import check_stage_settings, fit_fold
from moa_lit.timing import PhaseTimer

log = logging.getLogger(__name__)


@dataclass
class CVPredictions:
    oof: np.ndarray  # rows x targets; NaN on rows of folds that were not run
    test: np.ndarray | None  # test rows x targets, averaged over seeds and folds
    fold_summaries: list[dict] = field(default_factory=list)


def _trainer(cfg: DictConfig, fold_path: Path, run_dir: Path, seed: int, fold: int, extra_callbacks=()):
    callbacks = [StopOnNonFiniteLoss(label=f"seed {seed} fold {fold}"), *extra_callbacks]
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
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(fold_path))
    return trainer, checkpoint


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
    device = "cuda" if str(cfg.trainer.get("accelerator", "cpu")) in ("gpu", "cuda") else "cpu"
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

    for seed in seeds:
        for fold in fold_ids:
            t0 = time.perf_counter()
            fold_path = run_files.fold_dir(run_dir, seed, fold)
            fold_path.mkdir(parents=True, exist_ok=True)
            with timer("features"):
                dm.set_fold(fold, seed=seed)
            with timer("training"):
                fitted = fit_fold(
                    cfg, dm, fold, seed, fold_path,
                    make_trainer=partial(_trainer, cfg, fold_path, run_dir, seed, fold),
                    nonscored=nonscored, drug=drug,
                )
            best_epoch, best_score = fitted.best_epoch, fitted.best_score

            with timer("prediction"):
                val_idx = dm.val_rows(fold)
                pred = fitted.predict_proba(dm.tensors.x_val)
                oof_sum[val_idx] += pred
                if test_sum is not None:
                    test_pred = fitted.predict_proba(dm.transform(test_features))
                    test_sum += test_pred
            with timer("writing"):
                joblib.dump(dm.preprocessor, fold_path / run_files.PREPROCESSOR)
                run_files.write_json(
                    {
                        "seed": seed,
                        "fold": fold,
                        "best_epoch": best_epoch,
                        "best_val_logloss_treated": best_score,
                        "n_features": fitted.module.hparams.n_features,
                        "n_train_rows": len(dm.train_rows(fold)),
                        "n_val_rows": len(val_idx),
                        **fitted.stages,
                    },
                    fold_path / run_files.FOLD_INFO,
                )
            summary = {
                "seed": seed,
                "fold": fold,
                "best_epoch": best_epoch,
                "val_logloss_treated": best_score,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            summaries.append(summary)
            log.info(
                "seed %d fold %d: best epoch %s, validation log loss %.5f (treated rows), %.1f s",
                seed, fold, best_epoch, best_score if best_score is not None else float("nan"), summary["seconds"],
            )

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
