"""Lightning checkpoints written like every other run file: under a temporary
name in the same folder, then renamed, so a run killed while saving keeps the
previous ``last.ckpt``/``best.ckpt`` whole (Lightning's own writer opens the
final path, or a temporary file elsewhere, depending on the filesystem).

The checkpoint is serialised at once (so training may change the weights
afterwards) and its bytes are written by a background thread while the next
epoch trains: a 25 MB write costs about as much as a few training steps on
CPU. One write is in flight at most; the next save, a removal, a load and
Lightning's teardown at the end of ``fit`` (also after an error or Ctrl-C)
wait for it, and a failed write is raised there."""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from moa_lit.runs import files as run_files


def read_checkpoint(path) -> dict[str, Any]:
    """A checkpoint of a run (Lightning's, or the stacked models) as tensors and
    plain values only: a run folder may come from a stranger, so nothing read
    from it may run code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _write(path: Path, buffer: io.BytesIO) -> None:
    with run_files.atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


class AtomicCheckpointIO(TorchCheckpointIO):
    def __init__(self) -> None:
        super().__init__()
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        # Serialised in memory, then written: torch.save reports a full disk as
        # an opaque RuntimeError, a plain write as OSError(ENOSPC), which
        # atomic_path turns into one line naming the checkpoint.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        self.wait()
        # The folder now, not in the thread: ModelCheckpoint links last.ckpt
        # to best.ckpt in it right after this returns.
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending = self._writer.submit(_write, Path(path), buffer)

    def wait(self) -> None:
        """Until the write in flight is on disk; its error, if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def load_checkpoint(self, path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.wait()
        return read_checkpoint(path)

    def remove_checkpoint(self, path) -> None:
        self.wait()
        super().remove_checkpoint(path)

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
            super().teardown()
