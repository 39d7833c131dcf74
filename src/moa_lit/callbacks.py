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
