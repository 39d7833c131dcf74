"""Wall time of a run split into its phases (data, folds, features, training,
prediction, writing), so a run can say where its time goes."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager


class PhaseTimer:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.phases: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] += time.perf_counter() - t0

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start

    def summary(self) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in self.phases.items()}
        out["total"] = round(self.total, 3)
        return out
