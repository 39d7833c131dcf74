"""Running out of memory, said as a one-line user error naming the settings
that size the memory a fold needs."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from moa_lit.errors import MoAError


class OutOfMemoryError(MoAError):
    """A fold needed more GPU (or host) memory than there is."""


@contextmanager
def out_of_memory_as_user_error(label: str, sizes: dict[str, object]) -> Iterator[None]:
    """``sizes``: the settings to lower with their current values, e.g.
    ``{"loader.batch_size": 128, "model.net.hidden_size": 1024}``."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
        # torch's CPU allocator raises a plain RuntimeError
        if not isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) and "can't allocate memory" not in str(exc):
            raise
        device = "GPU" if isinstance(exc, torch.cuda.OutOfMemoryError) else "host"
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        settings = ", ".join(f"{k}={v}" for k, v in sizes.items() if v is not None)
        raise OutOfMemoryError(
            f"{label}: out of {device} memory ({first_line[:200]}); lower one of {settings}"
        ) from exc
