"""Training of one fold in up to three stages (the winners' scheme; docs/modelling.md),
all on the fold's treated training rows only: stacked features from models of
the auxiliary targets on an inner K-fold (``stack.enabled``), pretraining of the
body on the auxiliary targets without validation (``pretrain.enabled``), then
the scored model, whose best epoch on the fold's validation rows is kept."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch

from moa_lit.errors import MoAError
from moa_lit.runs.run_dir import FoldDir
from moa_lit.scoring.scores import smoothed_prevalence
from moa_lit.settings import AuxiliaryStage, PretrainSettings, StackSettings
from moa_lit.training.callbacks import EpochTrainLoss, FreezeBody, StopOnNonFiniteLoss
from moa_lit.training.checkpoint_io import AtomicCheckpointIO, read_checkpoint
from moa_lit.training.datamodule import MoADataModule
from moa_lit.training.fold_predictor import FoldPredictor, StackedFeatures
from moa_lit.training.folds import assign_folds
from moa_lit.training.module import MoAModule, peak_lr_setting, plain

log = logging.getLogger(__name__)


@dataclass
class FoldPlan:
    new_model: Callable[..., MoAModule]  # MoAModule with the model's settings bound (n_features, n_targets late)
    new_trainer: Callable[..., L.Trainer]  # the Lightning Trainer with the trainer's settings bound
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    cv_seed: int = 42  # the inner folds of the stacked stage are drawn like the outer ones
    drug_threshold: int = 18

    def check(self, nonscored: np.ndarray | None) -> None:
        """Stages that need non-scored targets stop the run before any training, with one line."""
        for key, node in (("pretrain", self.pretrain), ("stack", self.stack)):
            if node.enabled and nonscored is None:
                raise MoAError(
                    f"{key}.enabled=true needs non-scored targets, but the data has no "
                    f"train_targets_nonscored.csv; set {key}.enabled=false"
                )


@dataclass
class FittedFold(FoldPredictor):
    """A fold's predictor and what its training found, for fold.json."""

    best_epoch: int | None = None
    best_score: float | None = None
    stages: dict = field(default_factory=dict)  # what the auxiliary stages used


def with_peak_lr(new_model: Callable[..., MoAModule], peak_lr: float | None) -> Callable[..., MoAModule]:
    """The model factory with a stage's own peak learning rate, in the setting that sets it (``peak_lr_setting``)."""
    if peak_lr is None:
        return new_model
    _, node, key = peak_lr_setting(new_model.keywords.get("scheduler")).split(".")  # model.<node>.<key>
    return partial(new_model, **{node: {**plain(new_model.keywords[node]), key: float(peak_lr)}})


def auxiliary_targets(
    key: str, choice: str, scored: np.ndarray, nonscored: np.ndarray, rows: np.ndarray, fold: int
) -> np.ndarray:
    """The auxiliary target matrix (all rows) restricted to the columns with at
    least one positive among ``rows`` (a column without one teaches nothing)."""
    aux = nonscored if choice == "nonscored" else np.hstack([scored, nonscored])
    keep = aux[rows].sum(axis=0) > 0
    if not keep.any():
        raise MoAError(
            f"{key}.targets={choice}: no target has a positive among fold {fold}'s "
            f"{len(rows)} treated training rows; use {key}.targets=scored+nonscored or {key}.enabled=false"
        )
    return np.ascontiguousarray(aux[:, keep], dtype=np.float32)


def _new_module(new_model: Callable[..., MoAModule], x_train: torch.Tensor, y_train: np.ndarray, **kwargs) -> MoAModule:
    module = new_model(n_features=x_train.shape[1], n_targets=y_train.shape[1], **kwargs)
    module.net.fit_inputs(x_train)  # e.g. TabM's piecewise-linear bins (models/tabm.py)
    # Start at the prior (logit of each target's smoothed prevalence) so the
    # first epochs are spent learning signal, not the base rates.
    prevalence = smoothed_prevalence(y_train)
    module.net.set_output_bias(np.log(prevalence / (1 - prevalence)))
    return module


def train_without_validation(
    plan: FoldPlan,
    node: AuxiliaryStage,
    dm: MoADataModule,
    x: torch.Tensor,
    y: np.ndarray,
    label: str,
    root: FoldDir,
    stage: str,
    checkpoint: Path | None = None,
) -> MoAModule:
    """A model trained for ``node.max_epochs`` on (x, y), training rows only:
    an auxiliary stage's, or a final model refitted on every row, whose last
    epoch is saved as ``checkpoint`` (``predict`` loads it like a best.ckpt).
    Its training losses are recorded in the fold as ``stage``."""
    module = _new_module(with_peak_lr(plan.new_model, node.lr), x, y)
    if node.lr is not None:
        module.lr_setting = f"{node.key}.lr"  # the stage's own rate
    losses = EpochTrainLoss()
    trainer = plan.new_trainer(
        max_epochs=int(node.max_epochs),
        callbacks=[StopOnNonFiniteLoss(label=label), losses],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        default_root_dir=str(root.path),
        plugins=[AtomicCheckpointIO()],
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")  # by design here
        trainer.fit(module, train_dataloaders=dm.batches(x, dm.tensor(y), train=True))
    if checkpoint is not None:
        # Weights and hyperparameters: the model is finished, never resumed.
        trainer.save_checkpoint(checkpoint, weights_only=True)
    root.record_train_losses(stage, losses.state_dict())
    module.to(dm.device)
    return module


def fit_stacked_features(
    plan: FoldPlan,
    dm: MoADataModule,
    fold: int,
    seed: int,
    aux: np.ndarray,
    drug: np.ndarray | None,
    fold_dir: FoldDir,
) -> tuple[StackedFeatures, torch.Tensor]:
    """Inner K-fold over the fold's training rows: returns the inner models and
    the training rows' stacked columns, each predicted by the inner model that
    did not train on that row. Inner models saved by an interrupted attempt at
    this fold are loaded, not trained again."""
    train_idx = dm.train_rows(fold)
    x_train = dm.tensors.x_train
    inner = assign_folds(
        dm.targets[train_idx],
        None if drug is None else np.asarray(drug)[train_idx],
        n_folds=int(plan.stack.inner_folds),
        seed=int(plan.cv_seed) + 1000 * (fold + 1),
        drug_threshold=int(plan.drug_threshold),
    )
    saved = StackedFeatures.load(fold_dir, dm.device)
    if saved is not None:
        log.info("%s: stacked models loaded from %s", fold_dir.label, fold_dir.stack_models)
    stack = StackedFeatures([]) if saved is None else saved
    # On the fold's device, like the features: no round trip through the host.
    oof = torch.zeros((len(train_idx), aux.shape[1]), device=x_train.device)
    for k in range(int(plan.stack.inner_folds)):
        fit_rows = np.flatnonzero(inner != k)
        pred_rows = np.flatnonzero(inner == k)
        if saved is None:
            L.seed_everything(seed * 100 + k, workers=False, verbose=False)
            stack.models.append(train_without_validation(
                plan, plan.stack, dm, x_train[fit_rows], aux[train_idx[fit_rows]],
                label=f"seed {seed} fold {fold} stacked inner fold {k}", root=fold_dir, stage=f"stack inner fold {k}",
            ))
        oof[pred_rows] = stack.models[k].probabilities(x_train[pred_rows]).to(oof.device)
    if saved is None:
        stack.save(fold_dir)  # at once: a resumed fold loads it
    return stack, torch.cat([x_train.float(), oof], dim=1)


def fit_fold(
    plan: FoldPlan,
    dm: MoADataModule,
    fold: int,
    seed: int,
    fold_dir: FoldDir,
    make_trainer: Callable[[list], tuple[L.Trainer, object]],
    nonscored: np.ndarray | None = None,
    drug: np.ndarray | None = None,
    ckpt_path: str | None = None,
) -> FittedFold:
    """The fold's scored model (after the optional stages) at its best epoch.
    ``ckpt_path``: an interrupted fold's last checkpoint to go on from; it holds
    the whole scored model, so pretraining is not repeated."""
    pretrain = plan.pretrain if plan.pretrain.enabled else None
    stacking = plan.stack if plan.stack.enabled else None
    train_idx = dm.train_rows(fold)
    scored = dm.targets
    x_train = dm.tensors.x_train

    stack = None
    info: dict = {}
    if stacking is not None:
        aux = auxiliary_targets("stack", stacking.targets, scored, nonscored, train_idx, fold)
        stack, x_train = fit_stacked_features(plan, dm, fold, seed, aux, drug, fold_dir)
        info["stacked_columns"] = aux.shape[1]
        dm.inputs = (x_train, stack.augment(dm.tensors.x_val))  # on the fold's device

    body_state = None
    if pretrain is not None and ckpt_path is None:
        aux = auxiliary_targets("pretrain", pretrain.targets, scored, nonscored, train_idx, fold)
        L.seed_everything(seed, workers=False, verbose=False)
        stage1 = train_without_validation(
            plan, pretrain, dm, x_train, aux[train_idx], label=f"seed {seed} fold {fold} pretraining", root=fold_dir,
            stage="pretrain",
        )
        body_state = stage1.net.body.state_dict()
        info["pretrained_targets"] = aux.shape[1]
        log.info("seed %d fold %d: pretrained on %d auxiliary targets", seed, fold, aux.shape[1])

    L.seed_everything(seed, workers=False, verbose=False)
    extra = {"body_lr_scale": float(pretrain.body_lr_scale)} if pretrain is not None else {}
    module = _new_module(plan.new_model, x_train, scored[train_idx], **extra)
    scored_losses = EpochTrainLoss()  # in the checkpoints: a resumed fold keeps its earlier epochs
    callbacks = [scored_losses]
    if body_state is not None:
        module.net.body.load_state_dict(body_state)  # the pretrained body under a new head
    if pretrain is not None and int(pretrain.freeze_body_epochs) > 0:
        callbacks.append(FreezeBody(int(pretrain.freeze_body_epochs)))
    trainer, checkpoint = make_trainer(callbacks)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)

    fold_dir.record_train_losses("scored", scored_losses.state_dict())
    result = FittedFold(
        preprocessor=dm.preprocessor, module=module, stack=stack, where=str(fold_dir.path),
        seed=fold_dir.seed, fold=fold_dir.fold, stages=info,
    )
    if checkpoint is not None and checkpoint.best_model_path:
        best_path = Path(checkpoint.best_model_path)
        target = fold_dir.best_checkpoint
        # Only this fold's own files: a path remembered from before a resume
        # may point into another folder.
        if best_path.resolve() != target.resolve() and best_path.parent.resolve() == fold_dir.path.resolve():
            best_path.replace(target)
        state = read_checkpoint(target)
        module.load_state_dict(state["state_dict"])
        result.best_epoch = int(state["epoch"])
        result.best_score = None if checkpoint.best_model_score is None else float(checkpoint.best_model_score)
    module.to(dm.device)
    return result
