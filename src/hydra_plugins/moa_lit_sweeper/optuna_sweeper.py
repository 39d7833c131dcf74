"""Registers moa-lit's failure-tolerant Optuna sweeper with Hydra.

Hydra only instantiates sweepers that live under ``hydra_plugins`` and imports
every plugin module at start-up, so this module is a thin, cheap-to-import
shell; the work happens in :mod:`moa_lit.sweeper`, imported on first use.
"""

from __future__ import annotations

from typing import Any, Optional

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig


class FailureTolerantOptunaSweeper(OptunaSweeper):
    """hydra-optuna-sweeper's ``OptunaSweeper`` (same config schema) whose
    failing trials are recorded as FAIL while the search goes on, up to
    ``max_failure_rate`` of ``n_trials``; see :mod:`moa_lit.sweeper`."""

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
        search_space: Optional[DictConfig],
        custom_search_space: Optional[str],
        params: Optional[DictConfig],
    ) -> None:
        from moa_lit.sweeper import FailureTolerantSweeperImpl

        self.sweeper = FailureTolerantSweeperImpl(
            sampler,
            direction,
            storage,
            study_name,
            n_trials,
            n_jobs,
            max_failure_rate,
            search_space,
            custom_search_space,
            params,
        )
