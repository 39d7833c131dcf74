"""Ctrl-C (SIGINT) and SIGTERM end a run with one line giving the command
that continues it, and exit status 128 + the signal's number, as a shell
reports a killed program. Both signals raise ``RunInterrupted``, which unwinds
like any error (a file being written is removed by ``atomic_path``) and is not
a KeyboardInterrupt, so Lightning's own handling (exit status 1) is not reached."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

HANDLED = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(BaseException):
    """A signal asked the run to stop (a BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` on the way up swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum, frame) -> None:
    # Further signals are ignored while the run unwinds and cleans up.
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_IGN)
    raise RunInterrupted(signum)


def continue_command(module: str, argv: Sequence[str], run_dir: Path) -> str:
    """The command line that continues the run in ``run_dir``."""
    kept = [a for a in argv if not a.startswith(("resume=", "hydra.run.dir=", "+resume=", "++resume="))]
    extra = ["resume=true"]
    if not any(a.startswith("paths.output_dir=") for a in argv):
        extra.append(f"hydra.run.dir={run_dir}")
    return " ".join(["python", "-m", module, *(shlex.quote(a) for a in [*kept, *extra])])


@contextmanager
def say_how_to_continue(module: str, argv: Sequence[str], run_dir: Path) -> Iterator[None]:
    """Within: SIGINT and SIGTERM end the program with one line and 128 + signal."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set in the main thread (a launcher's worker thread)
        return
    previous = {sig: signal.getsignal(sig) for sig in HANDLED}
    for sig in HANDLED:
        signal.signal(sig, _raise)
    try:
        yield
    except (RunInterrupted, KeyboardInterrupt) as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        name = signal.Signals(signum).name
        print(
            f"moa-lit: interrupted ({name}): finished folds and the last finished epoch are kept; "
            f"continue with: {continue_command(module, argv, run_dir)}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(128 + int(signum))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
