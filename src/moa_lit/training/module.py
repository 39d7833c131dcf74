"""The LightningModule: a network, its loss and its optimisation, and nothing
about files or folds (the cross-validation loop lives in ``cv.py``)."""

from __future__ import annotations

import inspect
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from moa_lit.settings import POSITIVE, Interval
from moa_lit.targets import ALLOWED_TARGETS

# logit(1 - 1e-15): the metric clips probabilities to [1e-15, 1 - 1e-15].
LOGIT_CLIP = math.log((1 - 1e-15) / 1e-15)


def peak_lr_setting(scheduler) -> str:
    """The setting that sets the peak learning rate: OneCycle's max_lr when the
    scheduler has one (it overrides the optimizer's lr), else the optimizer's."""
    return "model.scheduler.max_lr" if scheduler and "max_lr" in scheduler else "model.optimizer.lr"


def new_optimizer(optimizer_cfg: Any, params) -> torch.optim.Optimizer:
    """The configured optimizer, with torch's fused kernels where the config
    leaves ``fused``/``foreach`` unset and torch has them for the parameters'
    device: on the CPU (torch >= 2.4) an MLP's Adam step took 0.9 ms fused
    against 10.8 ms (issue 22). Elsewhere torch's default."""
    factory = instantiate(optimizer_cfg, _partial_=True, _execution_whitelist_=ALLOWED_TARGETS)
    params = list(params)
    chosen = {"fused", "foreach"} & set(factory.keywords)
    if not chosen and "fused" in inspect.signature(factory.func).parameters:
        try:
            return factory(params, fused=True)
        except RuntimeError:  # no fused kernel for this device, dtype or torch version
            pass
    return factory(params)


def plain(cfg: Any) -> Any:
    """DictConfig -> plain containers, so checkpoints hold no omegaconf objects."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class MoAModule(L.LightningModule):
    """``net``, ``optimizer`` and ``scheduler`` are Hydra configs (``_target_``
    dicts), kept as hyperparameters so ``MoAModule.load_from_checkpoint``
    rebuilds the same network without the run's config. ``lr_setting`` names
    the setting of its peak learning rate in errors (a stage with a rate of
    its own, ``pretrain.lr``, sets it)."""

    # Checked once when a command starts (moa_lit.settings.check_config).
    _parameter_constraints = {
        "label_smoothing": Interval(kind=float, low=0, high=0.5, closed="left"),
        "optimizer.lr": POSITIVE,
        "scheduler.max_lr": POSITIVE,
    }

    def __init__(
        self,
        net: dict,
        optimizer: dict,
        n_features: int,
        n_targets: int,
        scheduler: dict | None = None,
        label_smoothing: float = 0.0,
        body_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        net, optimizer, scheduler = plain(net), plain(optimizer), plain(scheduler)
        self.lr_setting = peak_lr_setting(scheduler)
        self.save_hyperparameters(
            {
                "net": net,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "n_features": n_features,
                "n_targets": n_targets,
                "label_smoothing": label_smoothing,
                "body_lr_scale": body_lr_scale,
            }
        )
        # The allow-list on every build: a checkpoint's hyperparameters are input
        # (a run folder from a stranger), and may be loaded outside a command.
        self.net = instantiate(net, n_features=n_features, n_targets=n_targets, _execution_whitelist_=ALLOWED_TARGETS)
        self._train_loss_sum: torch.Tensor | None = None  # this epoch's sum of batch mean x rows
        self._train_count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Batches are slices of tensors already on the fold's device
        (datamodule.py): returned as they are, without Lightning's generic walk
        over the batch on every step."""
        if isinstance(batch, (tuple, list)) and all(isinstance(t, torch.Tensor) and t.device == device for t in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def training_step(self, batch, batch_idx):
        x, y = batch
        s = self.hparams.label_smoothing
        target = y * (1.0 - s) + 0.5 * s if s else y
        logits = self(x)
        if logits.dim() == 3:  # an ensemble's members (batch, k, targets): their losses averaged (models/tabm.py)
            target = target.unsqueeze(1).expand_as(logits)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        # The epoch's mean is summed on the device and logged once per epoch:
        # a per-step self.log (even with on_step=False) costs Lightning's
        # result-collection bookkeeping on every step, measurable on CPU.
        if self._train_loss_sum is None:
            self._train_loss_sum = torch.zeros((), dtype=torch.float64, device=loss.device)
        self._train_loss_sum += loss.detach() * len(x)
        self._train_count += len(x)
        return loss

    def epoch_loss_sum(self) -> torch.Tensor | None:
        """This epoch's training losses summed so far, on the device (None before the first step)."""
        return self._train_loss_sum

    def epoch_train_loss(self) -> float | None:
        """This epoch's mean training loss (one host read); None before its first step.
        Callbacks' on_train_epoch_end runs before this module's, which resets it."""
        return float(self._train_loss_sum / self._train_count) if self._train_count else None

    def on_train_epoch_end(self) -> None:
        if self._train_count:
            self.log("train_loss", (self._train_loss_sum / self._train_count).float())
        self._train_loss_sum, self._train_count = None, 0

    def on_validation_epoch_start(self) -> None:
        self._val_loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._val_count = 0

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        # The competition metric on unsmoothed labels, clipped like the scorer.
        # Computed from logits in float64 with autocast off: CUDA autocast
        # refuses F.binary_cross_entropy on probabilities, and half precision
        # would round the small losses of rare targets. Clipping the logits at
        # +-logit(1 - 1e-15) is clipping the probabilities to [1e-15, 1 - 1e-15].
        with torch.autocast(device_type=logits.device.type, enabled=False):
            clipped = logits.double().clamp(-LOGIT_CLIP, LOGIT_CLIP)
            self._val_loss_sum += F.binary_cross_entropy_with_logits(clipped, y.double(), reduction="sum")
        self._val_count += y.numel()

    def on_validation_epoch_end(self) -> None:
        # Over the validation rows the datamodule serves: those that choose the
        # best epoch (MoADataModule.val_batches: the fold's new-drug rows).
        if self._val_count:
            self.log("val_logloss", (self._val_loss_sum / self._val_count).float(), prog_bar=True)

    def _param_groups(self) -> list[dict]:
        """One group, or the body and the rest apart when the body learns slower
        (fine-tuning a pretrained body: ``body_lr_scale`` < 1)."""
        scale = self.hparams.body_lr_scale
        if scale == 1.0:
            return [{"params": list(self.parameters())}]
        body_ids = {id(p) for p in self.net.body.parameters()}
        lr = self.hparams.optimizer.get("lr", 1e-3)
        return [
            {"params": [p for p in self.parameters() if id(p) in body_ids], "lr": lr * scale},
            {"params": [p for p in self.parameters() if id(p) not in body_ids], "lr": lr},
        ]

    def configure_optimizers(self):
        groups = self._param_groups()
        optimizer = new_optimizer(self.hparams.optimizer, groups)
        sched_cfg = self.hparams.scheduler
        if not sched_cfg:
            return optimizer
        extra = {}
        total_steps = int(self.trainer.estimated_stepping_batches)
        if "pct_start" in sched_cfg:
            # OneCycle divides by (pct_start * total_steps - 1): on very short runs
            # (a tiny fold, a few pretraining epochs) that is 0. Warm up for at
            # least 2 steps, and skip the schedule when there are fewer than 4.
            if total_steps < 4:
                return optimizer
            extra["pct_start"] = max(float(sched_cfg["pct_start"]), 2.0 / total_steps)
        if len(groups) == 2 and "max_lr" in sched_cfg:
            # OneCycle's one max_lr would override the groups' rates: scale it per group.
            max_lr = float(sched_cfg["max_lr"])
            extra["max_lr"] = [max_lr * self.hparams.body_lr_scale, max_lr]
        scheduler = instantiate(
            sched_cfg,
            optimizer=optimizer,
            total_steps=total_steps,
            _convert_="all",  # a per-group max_lr must reach OneCycle as a list
            _execution_whitelist_=ALLOWED_TARGETS,
            **extra,
        )
        # OneCycle is defined per optimisation step, not per epoch.
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """Sigmoid probabilities in eval mode, batched, as float32 on the
        module's device (rows already there are never copied)."""
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(self.device, non_blocking=True)
            out.append(torch.sigmoid(self(xb).float()))
        self.train(was_training)
        if not out:
            return torch.zeros((0, self.hparams.n_targets), device=self.device)
        return torch.cat(out)
