"""What every command-line entry point shares: bad input or settings end the
program with one line and exit code 2, and torch uses the configured threads."""

from __future__ import annotations

import logging
import os
import sys

import torch

from moa_lit.errors import MoAError

log = logging.getLogger("moa_lit")


def available_cores() -> int:
    """The cores this process may use: what SLURM gave the job
    (SLURM_CPUS_PER_TASK), else the CPU affinity mask (cgroups, taskset),
    else every core of the machine."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(num_threads: int | None) -> int:
    n = int(num_threads) if num_threads else available_cores()
    if n < 1:
        raise MoAError(f"num_threads={num_threads}: expected a positive number of threads")
    torch.set_num_threads(n)
    return n


def user_error(exc: BaseException) -> MoAError | None:
    """The MoAError behind an exception, also when Hydra's instantiate wrapped it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MoAError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def run_and_exit_on_error(fn, cfg):
    """Bad input or settings end the program with one line and exit code 2."""
    try:
        return fn(cfg)
    except Exception as exc:
        err = user_error(exc)
        if err is None:
            raise
        log.debug("stopped: %s", err)  # the console gets the one line below
        print(f"moa-lit: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
