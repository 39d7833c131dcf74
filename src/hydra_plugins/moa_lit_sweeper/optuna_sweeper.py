"""Registers moa-lit's failure-tolerant Optuna sweeper with Hydra, which only
instantiates sweepers under ``hydra_plugins`` and imports every plugin module
at start-up: a cheap shell whose work is in :mod:`moa_lit.sweeper` (Optuna is
imported on first use). Its config is hydra-optuna-sweeper's with this ``_target_``."""

from __future__ import annotations

from typing import Any, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class FailureTolerantOptunaSweeper(Sweeper):
    # Read by moa_lit.search.failures_go_to_sweeper: a failing trial raises
    # (this sweeper records it) instead of ending the process.
    records_failed_trials = True

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Optional[Any],
        study_name: Optional[str],
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        custom_search_space: Optional[str],
        params: Optional[DictConfig],
    ) -> None:
        from moa_lit.sweeper import FailureTolerantSweeperImpl

        self.sweeper = FailureTolerantSweeperImpl(
            sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate, custom_search_space, params
        )

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
