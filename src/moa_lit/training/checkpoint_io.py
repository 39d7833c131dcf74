"""Lightning checkpoints written like every other run file: under a temporary
name in the same folder, then renamed, so a run killed while saving keeps the
previous ``last.ckpt``/``best.ckpt`` whole (Lightning's own writer opens the
final path, or a temporary file elsewhere, depending on the filesystem)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from moa_lit.runs import files as run_files


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        # Serialised in memory, then written: torch.save reports a full disk as
        # an opaque RuntimeError, a plain write as OSError(ENOSPC), which
        # atomic_path turns into one line naming the checkpoint.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with run_files.atomic_path(Path(path)) as tmp:
            tmp.write_bytes(buffer.getbuffer())
