"""Training of one fold, in up to three stages (the winners' scheme), all on
the fold's treated training rows only:

- stacked features (``stack.enabled``): models of the auxiliary targets are
  trained on an inner K-fold split of the training rows; each training row gets
  the prediction of the inner model that did not see it, validation and test
  rows the average of the inner models. Those predictions are appended to the
  features of the scored model.
- pretraining (``pretrain.enabled``): the network is trained against the
  non-scored targets that have a positive in the training rows (optionally
  scored + non-scored), for its own epochs and learning rate, with no
  validation (it never sees the fold's validation rows).
- the scored model: a fresh network whose body is the pretrained one (the head
  is new, from ``make_head``), fine-tuned with an optional frozen body for the
  first epochs and a lower body learning rate; the best epoch on the fold's
  validation rows is kept.

``fit_fold`` is called once per seed and fold by ``cv.py``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from moa_lit import run_files
from moa_lit.callbacks import FreezeBody, StopOnNonFiniteLoss
from moa_lit.datamodule import MoADataModule
from moa_lit.errors import MoAError
from moa_lit.folds import assign_folds
from moa_lit.module import MoAModule
from moa_lit.scores import smoothed_prevalence

log = logging.getLogger(__name__)

TARGET_CHOICES = ("nonscored", "scored+nonscored")
STACK_MODELS = "stack_models.pt"  # in the fold's folder, beside best.ckpt


@dataclass
class StackedFeatures:
    """The inner models of the stacked stage; ``augment`` appends their
    averaged predictions to features of rows none of them trained on."""

    models: list[MoAModule]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The inner models' mean probability, float32 on ``x``'s device."""
        mean = torch.stack([m.probabilities(x).double() for m in self.models]).mean(dim=0)
        return mean.float().to(x.device)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.float(), self.predict(x)], dim=1)


def load_stack(fold_path: Path) -> StackedFeatures | None:
    """The stacked stage's inner models saved beside a fold's best.ckpt, if any."""
    path = Path(fold_path) / STACK_MODELS
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    models = []
    for hparams, state in zip(saved["hparams"], saved["state_dicts"]):
        model = MoAModule(**hparams)
        model.load_state_dict(state)
        models.append(model.eval())
    return StackedFeatures(models)


@dataclass
class FoldModel:
    module: MoAModule
    stack: StackedFeatures | None = None
    best_epoch: int | None = None
    best_score: float | None = None
    stages: dict = field(default_factory=dict)  # what the auxiliary stages used, for fold.json

    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        """Probabilities for rows given as the fold's preprocessed features."""
        if self.stack is not None:
            x = self.stack.augment(x)
        return self.module.predict_proba(x).numpy()


def _enabled(cfg: DictConfig, key: str) -> DictConfig | None:
    node = cfg.get(key)
    return node if node is not None and node.get("enabled", False) else None


def check_stage_settings(cfg: DictConfig, nonscored: np.ndarray | None) -> None:
    """Bad stage settings stop the run before any training, with one line."""
    for key in ("pretrain", "stack"):
        node = _enabled(cfg, key)
        if node is None:
            continue
        if node.targets not in TARGET_CHOICES:
            raise MoAError(f"{key}.targets={node.targets!r}: expected one of {list(TARGET_CHOICES)}")
        if nonscored is None:
            raise MoAError(
                f"{key}.enabled=true needs non-scored targets, but the data has no "
                "train_targets_nonscored.csv; set {key}.enabled=false".replace("{key}", key)
            )
        if int(node.max_epochs) < 1:
            raise MoAError(f"{key}.max_epochs={node.max_epochs}: expected at least 1 epoch")
    stack = _enabled(cfg, "stack")
    if stack is not None and int(stack.inner_folds) < 2:
        raise MoAError(f"stack.inner_folds={stack.inner_folds}: expected at least 2 inner folds")


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


def _prior_logits(y: np.ndarray) -> np.ndarray:
    prevalence = smoothed_prevalence(y)  # the prior baseline's rates
    return np.log(prevalence / (1 - prevalence))


def _model_config(cfg: DictConfig, peak_lr: float | None) -> DictConfig:
    """cfg.model, with its peak learning rate replaced when a stage sets its own:
    the scheduler's max_lr when it has one, else the optimizer's lr."""
    model_cfg = OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True))
    if peak_lr is not None:
        if model_cfg.get("scheduler") and "max_lr" in model_cfg.scheduler:
            model_cfg.scheduler.max_lr = float(peak_lr)
        else:
            model_cfg.optimizer.lr = float(peak_lr)
    return model_cfg


def peak_lr_setting(model_cfg: DictConfig) -> str:
    """The setting that sets the peak learning rate: OneCycle's max_lr when the
    scheduler has one (it overrides the optimizer's lr), else the optimizer's."""
    scheduler = model_cfg.get("scheduler")
    return "model.scheduler.max_lr" if scheduler and "max_lr" in scheduler else "model.optimizer.lr"


def _stage_lr_setting(cfg: DictConfig, node: DictConfig) -> str:
    """An auxiliary stage's own peak rate (pretrain.lr, stack.lr) when set."""
    for key in ("pretrain", "stack"):
        if cfg.get(key) is node or cfg.get(key) == node:
            if node.get("lr") is not None:
                return f"{key}.lr"
    return peak_lr_setting(cfg.model)


def _new_module(model_cfg: DictConfig, n_features: int, y_train: np.ndarray, **kwargs) -> MoAModule:
    module = instantiate(model_cfg, n_features=n_features, n_targets=y_train.shape[1], _recursive_=False, **kwargs)
    # Start at the prior (logit of each target's prevalence) so the first
    # epochs are spent learning signal, not the base rates.
    if hasattr(module.net, "set_output_bias"):
        module.net.set_output_bias(_prior_logits(y_train))
    return module


def train_without_validation(
    cfg: DictConfig,
    node: DictConfig,
    dm: MoADataModule,
    x: torch.Tensor,
    y: np.ndarray,
    label: str,
    root: Path,
) -> MoAModule:
    """An auxiliary model trained for a fixed number of epochs on (x, y), which
    are training rows only; no validation data is passed, so none is seen."""
    module = _new_module(_model_config(cfg, node.get("lr")), x.shape[1], y)
    trainer = instantiate(
        cfg.trainer,
        max_epochs=int(node.max_epochs),
        callbacks=[StopOnNonFiniteLoss(label=label, rate_setting=_stage_lr_setting(cfg, node))],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        default_root_dir=str(root),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")  # by design here
        trainer.fit(module, train_dataloaders=dm.batches(x, dm.tensor(y), train=True))
    module.to(dm.device)
    return module


def fit_stacked_features(
    cfg: DictConfig,
    node: DictConfig,
    dm: MoADataModule,
    fold: int,
    seed: int,
    aux: np.ndarray,
    drug: np.ndarray | None,
    fold_path: Path,
) -> tuple[StackedFeatures, torch.Tensor]:
    """Inner K-fold over the fold's training rows: returns the inner models and
    the training rows' stacked columns, each predicted by the inner model that
    did not train on that row."""
    train_idx = dm.train_rows(fold)
    x_train = dm.tensors.x_train
    inner = assign_folds(
        dm.targets[train_idx],
        None if drug is None else np.asarray(drug)[train_idx],
        n_folds=int(node.inner_folds),
        seed=int(cfg.cv.seed) + 1000 * (fold + 1),
        drug_threshold=int(cfg.cv.drug_threshold),
    )
    # On the fold's device, like the features: no round trip through the host.
    oof = torch.zeros((len(train_idx), aux.shape[1]), device=x_train.device)
    models = []
    for k in range(int(node.inner_folds)):
        fit_rows = np.flatnonzero(inner != k)
        pred_rows = np.flatnonzero(inner == k)
        L.seed_everything(seed * 100 + k, workers=False, verbose=False)
        model = train_without_validation(
            cfg, node, dm, x_train[fit_rows], aux[train_idx[fit_rows]],
            label=f"seed {seed} fold {fold} stacked inner fold {k}", root=fold_path,
        )
        oof[pred_rows] = model.probabilities(x_train[pred_rows]).to(oof.device)
        models.append(model)
    torch.save(
        {"hparams": [dict(m.hparams) for m in models], "state_dicts": [m.state_dict() for m in models]},
        fold_path / STACK_MODELS,
    )
    stack = StackedFeatures(models)
    return stack, torch.cat([x_train.float(), oof], dim=1)


def fit_fold(
    cfg: DictConfig,
    dm: MoADataModule,
    fold: int,
    seed: int,
    fold_path: Path,
    make_trainer: Callable[[list], tuple[L.Trainer, object]],
    nonscored: np.ndarray | None = None,
    drug: np.ndarray | None = None,
    ckpt_path: str | None = None,
) -> FoldModel:
    """Train the fold's scored model (after the optional stages) on ``dm``'s
    current fold; returns it at its best epoch, ready to predict.

    ``ckpt_path``: an interrupted fold's last checkpoint to go on from; it holds
    the whole scored model, so pretraining is not repeated."""
    pretrain, stacking = _enabled(cfg, "pretrain"), _enabled(cfg, "stack")
    train_idx = dm.train_rows(fold)
    scored = dm.targets
    x_train, x_val = dm.tensors.x_train, dm.tensors.x_val

    stack = None
    info: dict = {}
    if stacking is not None:
        aux = auxiliary_targets("stack", stacking.targets, scored, nonscored, train_idx, fold)
        stack, x_train = fit_stacked_features(cfg, stacking, dm, fold, seed, aux, drug, fold_path)
        info["stacked_columns"] = aux.shape[1]
        x_val = stack.augment(x_val)
        x_train, x_val = x_train.to(dm.device), x_val.to(dm.device)

    body_state = None
    if pretrain is not None and ckpt_path is None:
        aux = auxiliary_targets("pretrain", pretrain.targets, scored, nonscored, train_idx, fold)
        L.seed_everything(seed, workers=False, verbose=False)
        stage1 = train_without_validation(
            cfg, pretrain, dm, x_train, aux[train_idx], label=f"seed {seed} fold {fold} pretraining", root=fold_path
        )
        body_state = stage1.net.body.state_dict()
        info["pretrained_targets"] = aux.shape[1]
        log.info("seed %d fold %d: pretrained on %d auxiliary targets", seed, fold, aux.shape[1])

    L.seed_everything(seed, workers=False, verbose=False)
    extra = {"body_lr_scale": float(pretrain.body_lr_scale)} if pretrain is not None else {}
    module = _new_module(_model_config(cfg, None), x_train.shape[1], scored[train_idx], **extra)
    callbacks = []
    if body_state is not None:
        module.net.body.load_state_dict(body_state)  # the pretrained body under a new head
    if pretrain is not None and int(pretrain.freeze_body_epochs) > 0:
        callbacks.append(FreezeBody(int(pretrain.freeze_body_epochs)))
    trainer, checkpoint = make_trainer(callbacks)
    if stack is None:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    else:
        y = dm.tensors
        trainer.fit(
            module,
            train_dataloaders=dm.batches(x_train, y.y_train, train=True),
            val_dataloaders=dm.batches(x_val, y.y_val, train=False),
            ckpt_path=ckpt_path,
        )

    result = FoldModel(module=module, stack=stack, stages=info)
    if checkpoint is not None and checkpoint.best_model_path:
        best_path = Path(checkpoint.best_model_path)
        target = fold_path / run_files.BEST_CHECKPOINT
        # Only this fold's own files: a path remembered from before a resume
        # may point into another folder.
        if best_path.resolve() != target.resolve() and best_path.parent.resolve() == fold_path.resolve():
            best_path.replace(target)
        state = torch.load(target, map_location="cpu", weights_only=False)
        module.load_state_dict(state["state_dict"])
        result.best_epoch = int(state["epoch"])
        result.best_score = None if checkpoint.best_model_score is None else float(checkpoint.best_model_score)
    module.to(dm.device)
    return result
