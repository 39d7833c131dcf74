"""The Optuna search behind ``python -m moa_lit.train hparams_search=optuna``.

hydra-optuna-sweeper 1.3.0 re-raises as soon as the failures of one batch of
trials exceed ``max_failure_rate``; with one trial per batch (``n_jobs=1``,
the setting for workers sharing a study) any failure ends the search. This
sweeper keeps the plugin's config schema, sampling and search-space parsing
and changes what happens around them:

- a trial that raises (a diverging loss raises ``TrainingDivergedError``) or
  returns a non-finite value is told to Optuna as FAIL, logged with its
  parameters, and the search goes on until more than
  ``floor(max_failure_rate * n_trials)`` trials of this sweep have failed;
- each trial runs in ``<sweep dir>/trial_<number>``, so a resumed or parallel
  sweep never writes into another trial's folder;
- trials asked but not finished (an interrupted launch) are told FAIL, so the
  study never keeps trials stuck in RUNNING;
- bad settings (unknown search-space key, unreachable storage) end the
  program with one line before any trial runs;
- the end prints the best trial over the whole study and the command that
  reproduces it, also written to ``optimization_results.yaml``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import math
import time
from pathlib import Path
from typing import Sequence

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.trial import TrialState

from moa_lit.runs import files as run_files
from moa_lit.errors import MoAError
from moa_lit.search import FailureBudget, config_keys, one_line, reproduce_command, storage_for_display

log = logging.getLogger("moa_lit.sweeper")

_ABSENT = object()
_SCHEMA_RACE_ATTEMPTS = 4
_RUN_DIR_ATTR = "moa_lit:run_dir"
_ERROR_ATTR = "moa_lit:error"


class FailureTolerantSweeperImpl(OptunaSweeperImpl):
    def sweep(self, arguments: list[str]) -> None:
        # Imported here: this module is loaded by the sweeper inside the
        # moa_lit.train program, whose error handling it shares.
        from moa_lit.cli import run_and_exit_on_error

        run_and_exit_on_error(self._search, arguments)

    # -- set-up -------------------------------------------------------------

    def _search_space(self, arguments: list[str]) -> tuple[dict, dict]:
        self._process_searchspace_config()
        overrides = self._parse_sweeper_params_config() + list(arguments)
        try:
            space, fixed = create_params_from_overrides(overrides)
        except Exception as err:
            raise MoAError(f"hydra.sweeper.params: cannot parse the search space ({one_line(err)})") from err
        if self.search_space_distributions:
            space = {**self.search_space_distributions, **space}
        for name in fixed:
            space.pop(name, None)
        self._check_keys([*space, *fixed])
        if not space:
            raise MoAError("hydra.sweeper.params: the search space is empty; expected e.g. model.net.n_layers: choice(1,2,3)")
        return space, fixed

    def _check_keys(self, names: Sequence[str]) -> None:
        """Every searched key must exist in the training config; Hydra would
        otherwise only fail when the first trial is composed."""
        known = None
        groups = set(self.config.hydra.runtime.choices.keys())
        for name in names:
            key = name.lstrip("~")
            if key.startswith("+") or key in groups:  # a new key, or a config group choice
                continue
            if OmegaConf.select(self.config, key, default=_ABSENT, throw_on_missing=False) is not _ABSENT:
                continue
            if known is None:
                known = [k for k in config_keys(self.config) if not k.startswith("hydra")]
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise MoAError(
                f"search space key {key}: no such key in the training config{hint}; "
                "expected a key listed by `python -m moa_lit.train --cfg job`, or +key to add one"
            )

    def _open_study(self, directions: list[str]) -> optuna.Study:
        shown = storage_for_display(self.storage)
        if self.storage is not None and str(self.storage).startswith("sqlite:///"):
            # SQLite creates the file but not its folder; Hydra makes the
            # sweep folder only when the first trial is launched.
            Path(str(self.storage)[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            study = self._create_or_load_study(directions)
        except Exception as err:
            raise MoAError(
                f"hydra.sweeper.storage={shown}: cannot open Optuna study '{self.study_name}' "
                f"({one_line(err)})"
            ) from err
        self._reseed_for_resume(study)
        return study

    def _create_or_load_study(self, directions: list[str]) -> optuna.Study:
        """Workers started together on an empty database race to create
        Optuna's tables (PostgreSQL: duplicate key on pg_type); the losers
        find the tables made on a second try."""
        from sqlalchemy.exc import IntegrityError, ProgrammingError

        for attempt in range(_SCHEMA_RACE_ATTEMPTS):
            try:
                return optuna.create_study(
                    study_name=self.study_name,
                    storage=self.storage,
                    sampler=self.sampler,
                    directions=directions,
                    load_if_exists=True,
                )
            except (IntegrityError, ProgrammingError):
                if attempt == _SCHEMA_RACE_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def _reseed_for_resume(self, study: optuna.Study) -> None:
        """A resumed study with a fixed sampler seed would draw the same random
        start-up points as the first run, i.e. redo its trials. Offsetting the
        seed by the number of trials already stored keeps resumes reproducible
        and new."""
        sampler_cfg = self.config.hydra.sweeper.get("sampler")
        seed = sampler_cfg.get("seed") if sampler_cfg is not None else None
        n_before = len(study.trials)
        if seed is None or n_before == 0 or isinstance(self.sampler, functools.partial):
            return
        self.sampler = instantiate(sampler_cfg, seed=int(seed) + n_before)
        study.sampler = self.sampler
        log.info("Resuming: sampler seed %d + %d trials already in the study", int(seed), n_before)

    # -- the search ---------------------------------------------------------

    def _search(self, arguments: list[str]) -> None:
        directions = self._get_directions()
        if len(directions) != 1:
            raise MoAError(
                f"hydra.sweeper.direction={directions}: expected one direction, minimize or maximize "
                "(train returns one number)"
            )
        if self.n_trials < 1 or self.n_jobs < 1:
            raise MoAError(
                f"hydra.sweeper.n_trials={self.n_trials}, n_jobs={self.n_jobs}: expected positive numbers"
            )
        space, fixed = self._search_space(arguments)
        if isinstance(self.sampler, functools.partial):  # GridSampler, built from the space by the plugin
            raise MoAError("hydra/sweeper/sampler=grid is not supported by this sweeper; use tpe or random")
        study = self._open_study(directions)
        budget = FailureBudget(self.n_trials, self.max_failure_rate)
        log.info(
            "Study '%s' in %s: %d trials so far; this sweep runs %d (%d at a time), sampler %s, "
            "stops after more than %d failed",
            study.study_name, storage_for_display(self.storage), len(study.trials), self.n_trials,
            self.n_jobs, type(self.sampler).__name__, budget.allowed,
        )
        last_error: BaseException | None = None
        to_go = self.n_trials
        while to_go > 0 and not budget.exhausted:
            trials = [study.ask() for _ in range(min(self.n_jobs, to_go))]
            to_go -= len(trials)
            for error in self._run_batch(study, trials, space, fixed):
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

    def _run_batch(self, study: optuna.Study, trials: list, space: dict, fixed: dict) -> list[BaseException | None]:
        told: set[int] = set()
        try:
            overrides = self._configure_trials(trials, space, fixed)
            overrides = [
                (*trial_overrides, f"hydra.sweep.subdir={run_files.trial_subdir(trial.number)}")
                for trial, trial_overrides in zip(trials, overrides)
            ]
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

    def _tell(self, study: optuna.Study, trial, ret) -> BaseException | None:
        run_dir = _run_dir(ret)
        if run_dir:
            trial.set_system_attr(_RUN_DIR_ATTR, run_dir)
        try:
            value = float(ret.return_value)  # re-raises the trial's exception
            if not math.isfinite(value):
                raise MoAError(f"the trial returned {value}")
        except Exception as err:
            trial.set_system_attr(_ERROR_ATTR, one_line(err))
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
        # The base plugin stores each trial's fixed overrides as user attributes.
        command = reproduce_command(best.params, dict(best.user_attrs))
        results = {
            "name": "optuna",
            "best_params": best.params,
            "best_value": best.value,
            "best_trial": {
                "number": best.number,
                "run_dir": best.system_attrs.get(_RUN_DIR_ATTR),
                "command": command,
            },
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


def _run_dir(ret) -> str | None:
    try:
        return str(ret.hydra_cfg.hydra.runtime.output_dir)
    except Exception:  # the job failed before Hydra set up its folder
        return None
