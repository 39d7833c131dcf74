"""Cross-validation around Lightning: for each seed and fold, fit the fold's
features, train, keep the best epoch, predict the fold's validation rows
(out-of-fold) and the test rows. Control rows are predicted exactly 0."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from moa_lit import run_files
from moa_lit.callbacks import StopOnNonFiniteLoss
from moa_lit.datamodule import MoADataModule
from moa_lit.timing import PhaseTimer

log = logging.getLogger(__name__)


@dataclass
class CVPredictions:
    oof: np.ndarray  # rows x targets; NaN on rows of folds that were not run
    test: np.ndarray | None  # test rows x targets, averaged over seeds and folds
    fold_summaries: list[dict] = field(default_factory=list)


def _trainer(cfg: DictConfig, fold_path: Path, run_dir: Path, seed: int, fold: int):
    callbacks = [StopOnNonFiniteLoss(label=f"seed {seed} fold {fold}")]
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
) -> CVPredictions:
    n_rows, n_targets = targets.shape
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
            L.seed_everything(seed, workers=False, verbose=False)
            module = instantiate(
                cfg.model, n_features=dm.n_features, n_targets=n_targets, _recursive_=False
            )
            # Start at the fold's prior (logit of each target's prevalence) so the
            # first epochs are spent learning signal, not the base rates.
            if hasattr(module.net, "set_output_bias"):
                train_targets = targets[dm.train_rows(fold)]
                # smoothed like the prior baseline: half a positive for unseen targets
                prevalence = (train_targets.sum(axis=0) + 0.5) / (len(train_targets) + 1.0)
                module.net.set_output_bias(np.log(prevalence / (1 - prevalence)))
            trainer, checkpoint = _trainer(cfg, fold_path, run_dir, seed, fold)
            with timer("training"):
                trainer.fit(module, datamodule=dm)
            best_epoch = None
            best_score = None
            if checkpoint is not None and checkpoint.best_model_path:
                best_path = Path(checkpoint.best_model_path)
                target = fold_path / run_files.BEST_CHECKPOINT
                if best_path != target:
                    best_path.replace(target)
                state = torch.load(target, map_location="cpu", weights_only=False)
                module.load_state_dict(state["state_dict"])
                best_epoch = int(state["epoch"])
                best_score = float(checkpoint.best_model_score)
            module.to(dm.device)

            with timer("prediction"):
                val_idx = dm.val_rows(fold)
                pred = module.predict_proba(dm.tensors.x_val).numpy()
                oof_sum[val_idx] += pred
                if test_sum is not None:
                    test_pred = module.predict_proba(dm.transform(test_features)).numpy()
                    test_sum += test_pred
            with timer("writing"):
                joblib.dump(dm.preprocessor, fold_path / run_files.PREPROCESSOR)
                run_files.write_json(
                    {
                        "seed": seed,
                        "fold": fold,
                        "best_epoch": best_epoch,
                        "best_val_logloss_treated": best_score,
                        "n_features": dm.n_features,
                        "n_train_rows": len(dm.train_rows(fold)),
                        "n_val_rows": len(val_idx),
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
    oof[run_rows & is_control] = 0.0  # controls have no MoA by definition
    test = None
    if test_sum is not None:
        test = test_sum / (len(seeds) * len(fold_ids))
        if test_is_control is not None:
            test[test_is_control] = 0.0
    return CVPredictions(oof=oof, test=test, fold_summaries=summaries)
