"""Lightning callbacks of the project's own."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.fabric.utilities.seed import seed_everything

from moa_lit.training.datamodule import epoch_seed
from moa_lit.errors import MoAError


class TrainingDivergedError(MoAError):
    """The loss became NaN or infinite: the fold stops instead of writing NaN predictions."""


class StopOnNonFiniteLoss(L.Callback):
    """Stops a fold at the first epoch whose training loss became non-finite,
    naming the fold, the epoch and the setting of the learning rate (the
    module's ``lr_setting``). The module's epoch sum on the device is
    non-finite exactly when a batch's loss was (BCE is >= 0), so it is read
    once, at the epoch's last batch (before validation and checkpoints)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Every loader here has a length (TensorBatches), so the last batch is known.
        total = pl_module.epoch_loss_sum()
        if batch_idx + 1 < trainer.num_training_batches or total is None:
            return
        value = float(total)
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"{self.label}: training loss became {value} at epoch "
                f"{trainer.current_epoch}; the learning rate is likely too high: lower {pl_module.lr_setting}"
            )


class EpochTrainLoss(L.Callback):
    """The training loss where a stage started (its first batch, before any
    update) and each epoch's mean, whatever the logger (or none), saved in
    checkpoints so a resumed fold keeps its earlier epochs; recorded per stage
    in ``train_losses.json`` for the divergence check (``run_checks.py``)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.start is None and trainer.current_epoch == 0 and batch_idx == 0:
            self.start = float(outputs["loss"].detach())  # Lightning passes training_step's loss as {"loss": ...}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Read from the module: callbacks run before the module's own
        # on_train_epoch_end, which logs train_loss, so callback_metrics would
        # still hold the previous epoch's value here.
        value = pl_module.epoch_train_loss()
        if value is not None:
            del self.losses[trainer.current_epoch:]  # an epoch run again after a resume counts once
            self.losses.append(float(value))

    def state_dict(self) -> dict[str, Any]:
        return {"start": self.start, "epochs": list(self.losses)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.start = state_dict.get("start")
        self.losses = list(state_dict.get("epochs", []))


class SeedEachEpoch(L.Callback):
    """Reseeds the global random generators (dropout) at the first batch of
    every training epoch from (seed, fold, epoch). Lightning does not save the
    global generator in checkpoints, so without this a fold resumed at epoch e
    would draw different dropout masks than an uninterrupted run. The first
    batch is used rather than ``on_train_epoch_start``, which Lightning's fit
    loop does not call when it restarts mid-epoch or at an epoch's end."""

    def __init__(self, seed: int, fold: int) -> None:
        self.seed, self.fold = seed, fold

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            seed_everything(epoch_seed(self.seed, self.fold, trainer.current_epoch) % 2**32, verbose=False)


class FoldCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint whose memory of the best epoch survives a run
    folder that was moved or copied before ``resume=true``. Lightning keeps
    only ``best_model_path`` (still pointing into the old folder) when the
    folder changed, so the first resumed epoch would count as the best
    whatever its score; here paths under the old folder are read as the same
    files under the new one."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath:

            def moved(path: str | None) -> str | None:
                return str(Path(self.dirpath) / Path(path).name) if path and Path(path).parent == Path(old) else path

            state_dict = {
                **state_dict,
                "dirpath": self.dirpath,
                "best_model_path": moved(state_dict.get("best_model_path")),
                "kth_best_model_path": moved(state_dict.get("kth_best_model_path")),
                "last_model_path": moved(state_dict.get("last_model_path")),
                "best_k_models": {moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()},
            }
        super().load_state_dict(state_dict)


class FreezeBody(L.Callback):
    """Fine-tuning a pretrained body: for the first ``epochs`` epochs only the
    new head learns (the body's weights get no gradient and its batch-norm
    statistics stay as pretrained), so a random head cannot wreck the body
    before it fits; then the whole network trains."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def _set(self, pl_module, frozen: bool) -> None:
        body = pl_module.net.body
        for p in body.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            body.eval()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Lightning puts the model back in train mode after each validation, so
        # the frozen body is set to eval mode again at every epoch start.
        self._set(pl_module, frozen=trainer.current_epoch < self.epochs)

    def on_train_end(self, trainer, pl_module) -> None:
        self._set(pl_module, frozen=False)
