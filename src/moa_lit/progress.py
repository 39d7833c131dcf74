"""Progress of long work as plain lines on stderr: one when a phase starts,
then ``done/total`` at most every few seconds, each with the time since the
work began. Plain lines, not a redrawn bar: they read the same in a terminal,
a log file and a SLURM job's output, and a short run prints only its phase
lines (nothing to spam a test's output with)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, what: str, every_s: float = 5.0, enabled: bool = True):
        self.what, self.every_s, self.enabled = what, every_s, enabled
        self.started = self.last = time.perf_counter()
        self.phase_name, self.done, self.total = "", 0, None

    def phase(self, name: str, total: int | None = None) -> None:
        """A new step of the work; ``total`` units when it is counted."""
        self.phase_name, self.done, self.total = name, 0, total
        self._say()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if time.perf_counter() - self.last >= self.every_s:
            self._say()

    def end(self) -> None:
        self.phase_name, self.total = "done", None
        self._say()

    def _say(self) -> None:
        self.last = time.perf_counter()
        if not self.enabled:
            return
        count = f" {self.done}/{self.total}" if self.total else ""
        # sys.stderr looked up on each line: pytest and callers may swap it.
        print(f"{self.what}: {self.phase_name}{count} ({self.last - self.started:.0f} s)", file=sys.stderr, flush=True)


QUIET = Progress("", enabled=False)  # the default of library functions: their callers say what the work is
