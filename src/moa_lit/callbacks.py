"""Lightning callbacks of the project's own."""

from __future__ import annotations

import math

import lightning as L

from moa_lit.errors import MoAError


class TrainingDivergedError(MoAError):
    """The loss became NaN or infinite: the fold stops instead of writing NaN predictions."""


class StopOnNonFiniteLoss(L.Callback):
    """Stops a fold at the first non-finite training loss, naming the fold, the
    epoch and the likely cause."""

    def __init__(self, label: str = "") -> None:
        self.label = label

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"{self.label + ': ' if self.label else ''}training loss became {value} at epoch "
                f"{trainer.current_epoch} (batch {batch_idx}); the learning rate is likely too high: "
                "lower model.optimizer.lr / model.scheduler.max_lr"
            )


class FreezeBody(L.Callback):
    """Fine-tuning a pretrained body: for the first ``epochs`` epochs only the
    new head learns (the body's weights get no gradient and its batch-norm
    statistics stay as pretrained), so a random head cannot wreck the body
    before it fits; then the whole network trains."""

    def __init__(self, epochs: int) -> None:
        if epochs < 0:
            raise MoAError(f"pretrain.freeze_body_epochs={epochs}: expected 0 or more epochs")
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
