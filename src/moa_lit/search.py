"""Hyperparameter search pieces that need neither Optuna nor torch: which
sweeper owns trial failures, the failure budget, and the command line that
reproduces a trial. The sweeper itself is :mod:`moa_lit.sweeper`."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any, Iterable

# Overrides that select the search itself; a reproduced trial is a plain run.
SEARCH_ONLY_KEYS = ("hparams_search",)


def failures_go_to_sweeper() -> bool:
    """True inside a trial of a sweeper whose class says ``records_failed_trials``:
    a failing trial raises to it (recorded as FAIL) instead of ending the process."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from hydra.utils import get_class

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return False
    try:
        return bool(getattr(get_class(HydraConfig.get().sweeper.get("_target_")), "records_failed_trials", False))
    except Exception:  # no sweeper, or not importable here: Hydra itself reports that
        return False


def one_line(exc: BaseException) -> str:
    """An exception as one log line: our own errors by message, others with their type."""
    from moa_lit.errors import MoAError

    text = " ".join(str(exc).split()) or repr(exc)
    # SQLAlchemy appends a documentation link that adds nothing to the line.
    text = text.split(" (Background on this error at:")[0]
    return text if isinstance(exc, MoAError) else f"{type(exc).__name__}: {text}"


@dataclass
class FailureBudget:
    """Failed trials tolerated in one sweep: ``floor(max_failure_rate * n_trials)``.
    Counted against the planned number of trials (not the ones run so far) so
    an early failure does not stop a search that would stay within its rate."""

    n_trials: int
    max_failure_rate: float
    failed: int = 0
    finished: int = 0

    @property
    def allowed(self) -> int:
        return math.floor(self.max_failure_rate * self.n_trials + 1e-9)

    @property
    def exhausted(self) -> bool:
        return self.failed > self.allowed

    def record(self, failed: bool) -> None:
        self.finished += 1
        self.failed += int(failed)


def reproduce_command(params: dict[str, Any], fixed: dict[str, Any], module: str = "moa_lit.train") -> str:
    """``python -m moa_lit.train ...`` with a trial's fixed and sampled overrides."""
    overrides: list[str] = []
    for name, value in [*fixed.items(), *params.items()]:
        if name.lstrip("+~") in SEARCH_ONLY_KEYS or name.startswith("hydra."):
            continue
        overrides.append(f"{name}={value}")
    return " ".join(["python", "-m", module, *(shlex.quote(o) for o in overrides)])


def storage_for_display(storage: Any) -> str:
    """A storage URL with its password hidden, for messages and logs."""
    if storage is None:
        return "null (in memory)"
    if hasattr(storage, "get") and storage.get("_target_"):  # a storage built from config
        paths = [str(v) for k, v in nested_items(storage) if k == "file_path"]
        return f"{str(storage.get('_target_')).rsplit('.', 1)[-1]}({', '.join(paths)})"
    text = str(storage)
    try:
        from sqlalchemy.engine.url import make_url

        return make_url(text).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy understands: shown as given
        return text


def nested_items(node: Any) -> Iterable[tuple[str, Any]]:
    """(key, value) pairs of a nested mapping, depth first."""
    for key, value in node.items():
        yield key, value
        if hasattr(value, "items"):
            yield from nested_items(value)


def config_keys(node: Any, prefix: str = "") -> Iterable[str]:
    """Dotted keys of a config, for 'did you mean' hints."""
    from omegaconf import DictConfig

    if isinstance(node, DictConfig):
        for key in node.keys():
            full = f"{prefix}{key}"
            yield full
            try:
                child = node._get_node(key)
            except Exception:
                continue
            yield from config_keys(child, full + ".")
