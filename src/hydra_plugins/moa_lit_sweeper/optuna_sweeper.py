"""Registers moa-lit's failure-tolerant Optuna sweeper with Hydra.

Hydra only instantiates sweepers that live under ``hydra_plugins`` and imports
every plugin module at start-up, so this module is a thin, cheap-to-import
shell on Hydra's public ``Sweeper`` interface; the work happens in
:mod:`moa_lit.sweeper`, imported on first use. Its config is
hydra-optuna-sweeper's (``hydra/sweeper: optuna``) with this ``_target_``.
"""

from __future__ import annotations

from typing import Any, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class FailureTolerantOptunaSweeper(Sweeper):
    """An Optuna sweeper whose failing trials are recorded as FAIL while the
    search goes on, up to ``max_failure_rate`` of ``n_trials``; see
    :mod:`moa_lit.sweeper`."""

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
