"""What every command-line entry point shares: Hydra composes its config,
bad input or settings end the program with one line and exit code 2 (inside
a failure-tolerant search they go to the sweeper instead), and torch uses
the configured threads."""

from __future__ import annotations

import logging
import os
import sys

import torch

from moa_lit import fs_errors
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


def user_error(exc: BaseException, writing_under: str | None = None) -> MoAError | None:
    """The MoAError behind an exception, also when Hydra's instantiate wrapped
    it; a file-system fault (full disk, read-only folder, ...) counts as one.
    ``writing_under``: the folder named when the fault names no file (a full
    disk met by a library's own writer, e.g. Lightning's CSV logger)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MoAError):
            return exc
        if isinstance(exc, OSError) and exc.errno in fs_errors.HANDLED_ERRNOS:
            where = None if exc.filename is not None or not writing_under else f"a file under {writing_under}"
            return fs_errors.describe(exc, where)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


MAX_LINE = 600


def _output_folder(cfg) -> str | None:
    """Where the command writes, when its config says (a run's folder, an output)."""
    from omegaconf import OmegaConf

    for key in ("paths.output_dir", "output_dir", "output"):
        try:
            value = OmegaConf.select(cfg, key, default=None)
        except Exception:  # an unresolvable interpolation outside a Hydra job
            value = None
        if value:
            return str(value)
    return None


def one_line(message: str, limit: int = MAX_LINE) -> str:
    """A message on one line of at most ``limit`` characters: a long middle (a
    huge list of values, a path repeated) is cut, the start (what failed) and
    the end (what was expected) are kept."""
    text = " ".join(message.split())
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3 - 5
    return f"{text[:head]} ... {text[-tail:]}"


def run_and_exit_on_error(fn, cfg):
    """Bad input or settings end the program with one line and exit code 2."""
    try:
        return fn(cfg)
    except Exception as exc:
        err = user_error(exc, writing_under=_output_folder(cfg))
        if err is None:
            raise
        log.debug("stopped: %s", err)  # the console gets the one line below
        # A finished but untrusted run is a warning with its own status (3).
        print(f"moa-lit: {getattr(err, 'kind', 'error')}: {one_line(str(err))}", file=sys.stderr, flush=True)
        sys.exit(getattr(err, "exit_status", 2))


def hydra_command(config_name: str, command, around=None):
    """The ``main`` of ``python -m moa_lit.<command>``: Hydra composes
    ``conf/<config_name>.yaml`` (whose ``hydra.job.name`` names the job), then
    ``command(cfg)`` runs under :func:`run_and_exit_on_error`, or, as a trial
    of a failure-tolerant search, raises to the sweeper, which records it.
    ``around(cfg)``, if given, is a context manager the command runs in,
    outside a search trial (train's Ctrl-C handling). Only allow-listed
    targets may be built: a config naming another ``_target_`` is one line
    before anything runs, and Hydra enforces the same list on every
    ``instantiate`` (``execution_whitelist``)."""
    import hydra

    from moa_lit.config import CONFIG_DIR
    from moa_lit.search import failures_go_to_sweeper
    from moa_lit.targets import ALLOWED_TARGETS, check_targets

    def checked(cfg):
        check_targets(cfg)
        return command(cfg)

    @hydra.main(config_path=CONFIG_DIR, config_name=config_name, execution_whitelist=ALLOWED_TARGETS)
    def main(cfg):
        if failures_go_to_sweeper():
            # An Optuna trial: the sweeper records a failure and goes on.
            return checked(cfg)
        if around is None:
            return run_and_exit_on_error(checked, cfg)
        with around(cfg):
            return run_and_exit_on_error(checked, cfg)

    return main
