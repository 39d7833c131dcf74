"""What every command-line entry point shares: Hydra composes its config,
bad input or settings end the program with one line and exit code 2 (inside
a failure-tolerant search they go to the sweeper instead), and torch uses
the configured threads."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import torch
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from moa_lit import fs_errors
from moa_lit.errors import MoAError

log = logging.getLogger("moa_lit")


def available_cores() -> int:
    """The cores this process may use: SLURM's, else the CPU affinity mask (cgroups, taskset)."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_jobs(hydra_cfg) -> int:
    """How many jobs of this command run at once on the cores this one was
    given: only the joblib launcher runs several (``hydra.launcher.n_jobs``,
    capped by a search's ``hydra.sweeper.n_jobs``); a SLURM job has cores of its own."""
    from hydra.types import RunMode

    if hydra_cfg is None or hydra_cfg.get("mode") != RunMode.MULTIRUN:
        return 1
    launcher = hydra_cfg.get("launcher") or {}
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        jobs = available_cores()
    elif int(n_jobs) < 0:  # joblib's -1 = every core it may use, -2 = all but one, ...
        jobs = max(1, available_cores() + 1 + int(n_jobs))
    else:
        jobs = max(1, int(n_jobs))
    trials = (hydra_cfg.get("sweeper") or {}).get("n_jobs")
    if trials is not None and int(trials) > 0:
        jobs = min(jobs, int(trials))
    return jobs


def configure_threads(num_threads: int | None, jobs: int | None = None) -> int:
    """torch's threads: ``num_threads`` when set, else the cores given divided
    by the jobs sharing them (default: this Hydra job's :func:`parallel_jobs`).
    More threads than that make OpenMP threads of the jobs wait on each other
    (measured: one run of 2 threads beside another on 2 cores went 15x
    slower, not 2x)."""
    if jobs is None:
        from hydra.core.hydra_config import HydraConfig

        jobs = parallel_jobs(HydraConfig.get() if HydraConfig.initialized() else None)
    n = int(num_threads) if num_threads else max(1, available_cores() // max(1, int(jobs)))
    torch.set_num_threads(n)
    return n


def busy_machine_line(threads: int) -> str | None:
    """One line when the machine's one-minute load average already fills its
    cores at start: this run's threads will compete with other processes."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return None
    cores = os.cpu_count() or 1
    if load < cores:
        return None
    return (
        f"the machine is busy at start (load average {load:.1f} on {cores} cores): this run's "
        f"{threads} thread(s) share the cores with other processes and will be slower; "
        f"lower num_threads or run fewer jobs at once if this is not expected"
    )


def user_error(exc: BaseException, writing_under: str | None = None, cfg=None) -> MoAError | None:
    """The MoAError behind an exception, a file-system fault or a library's
    refusal (:func:`library_error`) included. ``writing_under``: the folder
    named when the fault names no file (a full disk met by a library's own
    writer, e.g. Lightning's CSV logger)."""
    seen, first = set(), exc
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MoAError):
            return exc
        if isinstance(exc, OSError) and exc.errno in fs_errors.HANDLED_ERRNOS:
            where = None if exc.filename is not None or not writing_under else f"a file under {writing_under}"
            return fs_errors.describe(exc, where)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return library_error(first, cfg)


def library_error(exc: BaseException, cfg=None) -> MoAError | None:
    """A library's refusal of a node Hydra's ``instantiate`` built (Hydra notes
    its ``full_key`` on the exception) as one line naming the setting: the key
    the message names or whose value it quotes, else the node; else None."""
    def key_of(e):
        lines = [*getattr(e, "__notes__", []), *str(e).splitlines()]
        return next((line.split("full_key:", 1)[1].strip() for line in lines if line.startswith("full_key:")), None)

    while exc is not None and key_of(exc) is None:
        exc = exc.__cause__
    if exc is None:
        return None
    path = key_of(exc)
    text = " ".join(" ".join(line for line in str(exc).splitlines() if not line.startswith("full_key:")).split())
    node = OmegaConf.select(cfg, path, default=None) if OmegaConf.is_dict(cfg) else None
    values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_dict(node) else {}
    plain = {k: v for k, v in values.items() if not str(k).startswith("_") and not isinstance(v, (dict, list))}
    named = [k for k in plain if re.search(rf"\b{re.escape(str(k))}\b", text, re.IGNORECASE)]
    if len(named) != 1:  # no key named: the one whose value the message quotes
        named = [k for k, v in plain.items() if re.search(rf"(?<![\w.'-]){re.escape(str(v))}(?![\w.'-])", text)]
    from moa_lit.settings import shown

    key = f"{path}.{named[0]}={shown(plain[named[0]])}" if len(named) == 1 else path
    return MoAError(f"{key}: {text or type(exc).__name__}")


def _output_folder(cfg) -> str | None:
    for key in ("paths.output_dir", "output_dir", "output"):
        try:
            value = OmegaConf.select(cfg, key, default=None)
        except Exception:  # an unresolvable interpolation outside a Hydra job
            value = None
        if value:
            return str(value)
    return None


def one_line(message: str, limit: int = 600) -> str:
    """A message on one line of at most ``limit`` characters: a long middle is
    cut, the start (what failed) and the end (what was expected) are kept."""
    text = " ".join(message.split())
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3 - 5
    return f"{text[:head]} ... {text[-tail:]}"


# The nearest folder that existed above the run (or sweep) folder before Hydra
# made it (CheckFirst records it): what a refusal may remove lies below it.
_EXISTED: dict = {}


def remove_if_empty(folder: str | None) -> None:
    """A refused command leaves no folder behind: the empty folders Hydra made
    for it go; a folder that existed before the command is never removed."""
    above = _EXISTED.get("above")
    path = Path(folder).resolve() if folder else None
    while path is not None and above is not None and above in path.parents:
        try:
            path.rmdir()
        except OSError:  # not empty, or gone
            return
        path = path.parent


def run_and_exit_on_error(fn, cfg):
    """Bad input or settings end the program with one line and exit code 2."""
    try:
        return fn(cfg)
    except Exception as exc:
        err = user_error(exc, _output_folder(cfg), cfg)
        if err is None:
            raise
        if getattr(err, "exit_status", 2) == 2:
            from hydra.core.hydra_config import HydraConfig

            # The folder Hydra made for this job (a sweeper between its jobs has none).
            remove_if_empty(OmegaConf.select(HydraConfig.get(), "runtime.output_dir", default=None, throw_on_missing=False)
                            if HydraConfig.initialized() else None)
        stop(err)


def stop(err: MoAError) -> None:
    log.debug("stopped: %s", err)  # the console gets the one line below
    print(f"moa-lit: {getattr(err, 'kind', 'error')}: {one_line(str(err))}", file=sys.stderr, flush=True)
    sys.exit(getattr(err, "exit_status", 2))


def _stop_on_hydra_error(exc: BaseException, overrides: list[str]) -> None:
    from moa_lit.config import hydra_error

    line = hydra_error(exc, overrides)
    if line is not None:
        stop(MoAError(line))


def entry_point(main, argv: list[str]):
    """What Hydra refuses before the command runs is one line and exit 2 too
    (``HYDRA_FULL_ERROR`` is set so its errors reach here, not its report)."""
    users = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        return main()
    except Exception as exc:
        if not users:
            _stop_on_hydra_error(exc, argv)
        raise
    finally:
        if users is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)


_CHECKS: dict = {}  # config name -> the command's check(cfg, overrides)


class CheckFirst(Callback):
    """A Hydra callback (``hydra.callbacks.check_first``): every ``_target_``
    and the command's settings are checked before Hydra makes any folder.
    Hydra's callbacks turn an exception into a warning: a refusal ends the program here."""

    def on_run_start(self, config, config_name=None, **kwargs) -> None:
        from moa_lit.fs_errors import nearest_existing
        from moa_lit.targets import check_targets

        _EXISTED.clear()
        try:
            key = "hydra.sweep.dir" if str(config.hydra.mode).endswith("MULTIRUN") else "hydra.run.dir"
            _EXISTED["above"] = nearest_existing(Path(str(OmegaConf.select(config, key))).resolve())
        except Exception:  # an unresolvable folder: Hydra says so when it makes it
            pass
        try:
            check_targets(config)  # Hydra's own section too
            if config_name in _CHECKS:
                _CHECKS[config_name](config, OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
        except Exception as exc:
            _stop_on_hydra_error(exc, [])  # a MoAError's line, or an OmegaConf error's (a group removed with ~)
            raise

    on_multirun_start = on_run_start


def hydra_command(config_name: str, command, around=None, check=None):
    """The ``main`` of ``python -m moa_lit.<command>``: :class:`CheckFirst` runs
    ``check(cfg, overrides)`` (default: the command's schema) before Hydra
    makes a folder; ``command(cfg)`` runs under :func:`run_and_exit_on_error`
    in ``around(cfg)``, or, as a failure-tolerant search's trial, raises to the
    sweeper. Hydra enforces the allow-list of :mod:`moa_lit.targets` on every
    ``instantiate`` (``execution_whitelist``)."""
    import contextlib

    import hydra

    from moa_lit.config import CONFIG_DIR
    from moa_lit.search import failures_go_to_sweeper
    from moa_lit.settings import SCHEMAS, check_config
    from moa_lit.targets import ALLOWED_TARGETS

    _CHECKS[config_name] = check or (lambda cfg, overrides: check_config(cfg, SCHEMAS[config_name]))

    @hydra.main(config_path=CONFIG_DIR, config_name=config_name, execution_whitelist=ALLOWED_TARGETS)
    def main(cfg):
        if failures_go_to_sweeper():
            return command(cfg)  # an Optuna trial: the sweeper records a failure and goes on
        with around(cfg) if around else contextlib.nullcontext():
            return run_and_exit_on_error(command, cfg)

    return lambda: entry_point(main, sys.argv[1:])
