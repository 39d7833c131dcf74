"""Keep the console to what a user acts on: Lightning's banner lines and
warnings that do not apply to in-memory tabular batches are silenced."""

from __future__ import annotations

import logging
import warnings


def quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        ".*smaller than the logging interval.*",
        ".*does not have many workers.*",
        ".*isinstance\\(treespec, LeafSpec\\).*",
        ".*litlogger.*",
        ".*Checkpoint directory .* exists and is not empty.*",
        # MoAModule's transfer_batch_to_device is meant to be used with MoADataModule.
        ".*overridden `transfer_batch_to_device` in `LightningModule` but have passed in a `LightningDataModule`.*",
        # On a SLURM machine: each moa-lit job is one process; SLURM jobs are
        # started by hydra/launcher=submitit_slurm, not by Lightning.
        ".*The `srun` command is available on your system but is not used.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
