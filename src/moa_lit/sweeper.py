"""The Optuna search behind ``python -m moa_lit.train hparams_search=optuna``:
a Hydra sweeper on hydra-optuna-sweeper's config schema and search-space
syntax, driving Optuna's ask-and-tell API. Unlike that plugin's sweeper, which
ends the search as soon as one batch fails more than ``max_failure_rate``, a
trial that raises or returns a non-finite value is told FAIL and the search
goes on until more than ``floor(max_failure_rate * n_trials)`` trials of this
command have failed. A resumed study reseeds its sampler so it does not
redraw its first points; the end prints the best trial over the whole study
and the command that reproduces it.

One private thing is used: ``hydra_plugins.hydra_optuna_sweeper._impl.
create_params_from_overrides`` (:func:`parse_search_space`), so the search
space means exactly what the plugin documents; tests/test_sweeper_upstream.py
fails if it changes."""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from moa_lit.errors import MoAError
from moa_lit.runs import files as run_files
from moa_lit.search import FailureBudget, config_keys, nested_items, one_line, reproduce_command, storage_for_display
from moa_lit.targets import ALLOWED_TARGETS, check_targets

log = logging.getLogger("moa_lit.sweeper")

_ABSENT = object()
_SCHEMA_RACE_ATTEMPTS = 4
# Optuna user attributes this sweeper writes on each trial (next to the fixed
# overrides, stored one per attribute as hydra-optuna-sweeper does).
RUN_DIR_ATTR = "moa_lit:run_dir"
ERROR_ATTR = "moa_lit:error"
OWN_ATTRS = (RUN_DIR_ATTR, ERROR_ATTR)


def parse_search_space(overrides: list[str]) -> tuple[dict, dict, list[str]]:
    """(distributions, fixed values, deletions) of Hydra sweep overrides
    (PRIVATE upstream, hydra-optuna-sweeper 1.4.0rc3)."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    return create_params_from_overrides(overrides)


@dataclass
class FailureTolerantSweeperImpl:
    """hydra_plugins.moa_lit_sweeper's sweeper."""

    sampler: Any
    direction: Any
    storage: Any
    study_name: str | None
    n_trials: int
    n_jobs: int
    max_failure_rate: float
    custom_search_space: str | None
    params: DictConfig | None
    job_idx: int = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        from moa_lit.cli import run_and_exit_on_error  # the error handling of the program it runs in

        run_and_exit_on_error(self._search, arguments)

    # -- set-up -------------------------------------------------------------

    def _check_settings(self) -> list[str]:
        """The study's directions; one line for a setting this sweeper refuses."""
        items = list(self.direction) if OmegaConf.is_list(self.direction) or isinstance(self.direction, (list, tuple)) else [self.direction]
        names = [getattr(d, "name", str(d)) for d in items]
        if len(names) != 1 or names[0] not in ("minimize", "maximize"):
            raise MoAError(
                f"hydra.sweeper.direction={names}: expected one direction, minimize or maximize "
                "(train returns one number)"
            )
        if self.n_trials < 1 or self.n_jobs < 1:
            raise MoAError(
                f"hydra.sweeper.n_trials={self.n_trials}, n_jobs={self.n_jobs}: expected positive numbers"
            )
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise MoAError(f"hydra.sweeper.max_failure_rate={self.max_failure_rate}: expected a rate in [0, 1]")
        if self.custom_search_space:
            raise MoAError(
                f"hydra.sweeper.custom_search_space={self.custom_search_space}: not supported by moa-lit's "
                "sweeper; state the space in hydra.sweeper.params"
            )
        return names

    def _search_space(self, arguments: list[str]) -> tuple[dict, dict, list[str]]:
        overrides = [f"{k!s}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        try:
            space, fixed, deletions = parse_search_space(overrides)
        except Exception as err:
            raise MoAError(f"hydra.sweeper.params: cannot parse the search space ({one_line(err)})") from err
        for name in fixed:
            space.pop(name, None)
        self._check_keys([*space, *fixed])
        if not space:
            raise MoAError("hydra.sweeper.params: the search space is empty; expected e.g. model.net.n_layers: choice(1,2,3)")
        return space, fixed, deletions

    def _check_keys(self, names: list[str]) -> None:
        """Every searched key exists (Hydra would fail only when the first trial is composed)."""
        groups = set(self.config.hydra.runtime.choices.keys())
        for name in names:
            key = name.lstrip("~")
            if key.startswith("+") or key in groups:  # a new key, or a config group choice
                continue
            if OmegaConf.select(self.config, key, default=_ABSENT, throw_on_missing=False) is not _ABSENT:
                continue
            known = [k for k in config_keys(self.config) if not k.startswith("hydra")]
            close = difflib.get_close_matches(key, known, n=1)
            raise MoAError(
                f"search space key {key}: no such key in the training config{f' (did you mean {close[0]}?)' if close else ''}; "
                "expected a key listed by `python -m moa_lit.train --cfg job`, or +key to add one"
            )

    def _sampler(self, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
        if str(self.sampler.get("_target_", "")).endswith("GridSampler"):
            raise MoAError("hydra/sweeper/sampler=grid is not supported by this sweeper; use tpe or random")
        extra = {"seed": int(self.sampler.seed) + seed_offset} if seed_offset and self.sampler.get("seed") is not None else {}
        try:
            return instantiate(self.sampler, _execution_whitelist_=ALLOWED_TARGETS, **extra)
        except Exception as err:
            raise MoAError(f"hydra.sweeper.sampler: cannot build the sampler ({one_line(err)})") from err

    def _built_storage(self) -> Any:
        """A storage URL as given, or an Optuna storage built from config; its
        file's folder is made (Hydra makes the sweep folder only at the first trial)."""
        cfg = self.storage
        if cfg is None or isinstance(cfg, str):
            if isinstance(cfg, str) and cfg.startswith("sqlite:///"):
                Path(cfg[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            return cfg
        check_targets(OmegaConf.create({"storage": cfg}))
        for key, path in nested_items(cfg):
            if key == "file_path" and isinstance(path, str):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            return instantiate(cfg, _execution_whitelist_=ALLOWED_TARGETS)
        except Exception as err:
            raise MoAError(f"hydra.sweeper.storage: cannot build the Optuna storage ({one_line(err)})") from err

    def _open_study(self, directions: list[str]) -> optuna.Study:
        shown = storage_for_display(self.storage)
        try:
            study = self._create_or_load_study(self._built_storage(), directions)
        except MoAError:
            raise
        except Exception as err:
            if "optuna storage upgrade" in str(err):  # a database written by an older, incompatible Optuna
                raise MoAError(
                    f"hydra.sweeper.storage={shown}: this study was written by an older Optuna whose "
                    f"database layout Optuna {optuna.__version__} cannot read; upgrade it once with: "
                    f"optuna storage upgrade --storage {shown}"
                ) from err
            raise MoAError(
                f"hydra.sweeper.storage={shown}: cannot open Optuna study '{self.study_name}' "
                f"({one_line(err)})"
            ) from err
        n_before = len(study.trials)
        if n_before and self.sampler.get("seed") is not None:
            # A fixed seed would redraw the first run's start-up points, i.e.
            # redo its trials: offset by the trials already stored.
            study.sampler = self._sampler(seed_offset=n_before)
            log.info("Resuming: sampler seed %d + %d trials already in the study", int(self.sampler.seed), n_before)
        return study

    def _create_or_load_study(self, storage: Any, directions: list[str]) -> optuna.Study:
        """Workers started together on an empty database race to create
        Optuna's tables (PostgreSQL: duplicate key on pg_type); losers retry."""
        from sqlalchemy.exc import IntegrityError, ProgrammingError

        for attempt in range(_SCHEMA_RACE_ATTEMPTS):
            try:
                return optuna.create_study(
                    study_name=self.study_name, storage=storage, sampler=self._sampler(), directions=directions,
                    load_if_exists=True,
                )
            except (IntegrityError, ProgrammingError):
                if attempt == _SCHEMA_RACE_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))

    # -- the search ---------------------------------------------------------

    def _search(self, arguments: list[str]) -> None:
        directions = self._check_settings()
        check_targets(self.config)
        space, fixed, deletions = self._search_space(arguments)
        self._sampler()  # a bad sampler setting is one line before the study is touched
        study = self._open_study(directions)
        budget = FailureBudget(self.n_trials, self.max_failure_rate)
        log.info(
            "Study '%s' in %s: %d trials so far; this sweep runs %d (%d at a time), sampler %s, "
            "stops after more than %d failed",
            study.study_name, storage_for_display(self.storage), len(study.trials), self.n_trials,
            self.n_jobs, type(study.sampler).__name__, budget.allowed,
        )
        last_error: BaseException | None = None
        to_go = self.n_trials
        while to_go > 0 and not budget.exhausted:
            trials = [study.ask(fixed_distributions=space) for _ in range(min(self.n_jobs, to_go))]
            to_go -= len(trials)
            for error in self._run_batch(study, trials, fixed, deletions):
                budget.record(error is not None)
                last_error = error or last_error

        if not budget.exhausted:
            self._report(study)
            return
        with contextlib.suppress(MoAError):  # the best so far, if any trial completed
            self._report(study)
        raise MoAError(
            f"search stopped: {budget.failed} of {budget.finished} trials failed, more than "
            f"hydra.sweeper.max_failure_rate={self.max_failure_rate} x n_trials={self.n_trials} "
            f"allows ({budget.allowed}); last failure: {one_line(last_error)}"
        )

    def _run_batch(self, study: optuna.Study, trials: list, fixed: dict, deletions: list[str]) -> list[BaseException | None]:
        told: set[int] = set()
        try:
            overrides = []
            for trial in trials:
                for name, value in fixed.items():
                    trial.set_user_attr(name, value)
                overrides.append((
                    *(f"{name}={value}" for name, value in trial.params.items()),
                    *(f"{name}={value}" for name, value in fixed.items()),
                    *deletions,
                    f"hydra.sweep.subdir={run_files.trial_subdir(trial.number)}",
                ))
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            errors = []
            for trial, ret in zip(trials, returns):
                errors.append(self._tell(study, trial, ret))
                told.add(trial.number)
            return errors
        finally:
            # Interrupted (Ctrl-C, a launcher error): no trial stays RUNNING.
            for trial in trials:
                if trial.number not in told:
                    study.tell(trial, state=TrialState.FAIL)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret) -> BaseException | None:
        run_dir = None
        with contextlib.suppress(Exception):  # the job failed before Hydra set up its folder
            run_dir = str(ret.hydra_cfg.hydra.runtime.output_dir)
        if run_dir:
            trial.set_user_attr(RUN_DIR_ATTR, run_dir)
        try:
            value = float(ret.return_value)  # re-raises the trial's exception
            if not math.isfinite(value):
                raise MoAError(f"the trial returned {value}")
        except Exception as err:
            trial.set_user_attr(ERROR_ATTR, one_line(err))
            study.tell(trial, state=TrialState.FAIL)
            log.warning(
                "Trial %d FAILED with params %s: %s",
                trial.number, trial.params, one_line(err),
                exc_info=None if isinstance(err, MoAError) else err,
            )
            return err
        study.tell(trial, values=[value])
        log.info("Trial %d: %s with params %s", trial.number, value, trial.params)
        return None

    # -- results ------------------------------------------------------------

    def _report(self, study: optuna.Study) -> None:
        states = [t.state for t in study.get_trials(deepcopy=False)]
        counts = {s.name.lower(): states.count(s) for s in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)}
        try:
            best = study.best_trial
        except ValueError:
            raise MoAError(
                f"study '{study.study_name}' has no completed trial ({counts['fail']} failed); "
                "see the failed trials' messages above"
            ) from None
        command = reproduce_command(best.params, {k: v for k, v in best.user_attrs.items() if k not in OWN_ATTRS})
        results = {
            "name": "optuna",
            "best_params": best.params,
            "best_value": best.value,
            "best_trial": {"number": best.number, "run_dir": best.user_attrs.get(RUN_DIR_ATTR), "command": command},
            "study": {
                "name": study.study_name,
                "storage": storage_for_display(self.storage),
                "direction": study.direction.name.lower(),
                "n_trials": counts,
            },
        }
        path = Path(str(self.config.hydra.sweep.dir)) / run_files.OPTIMIZATION_RESULTS
        run_files.write_text(OmegaConf.to_yaml(OmegaConf.create(results)), path)
        print(
            f"Best of study '{study.study_name}' ({counts['complete']} complete, {counts['fail']} failed trials): "
            f"trial {best.number}, {best.value:.6g}\n"
            f"Best parameters: {best.params}\n"
            f"Reproduce it: {command}\n"
            f"Results: {path}",
            flush=True,
        )
