"""The Python objects a config may build. Hydra's ``instantiate`` calls
whatever ``_target_`` a config names; moa-lit builds only its own classes,
torch optimisers and schedulers, the Lightning trainer, callbacks and loggers,
and (in a search) Optuna samplers and storages. Any other ``_target_`` is
refused with one line before anything runs; Hydra enforces the same list on
every ``instantiate`` call (``hydra.main(execution_whitelist=...)``)."""

from __future__ import annotations

from typing import Any, Iterator

from moa_lit.errors import MoAError

# Hydra's execution-whitelist patterns: a trailing ".*" allows a package.
ALLOWED_TARGETS: tuple[str, ...] = (
    "moa_lit.*",
    "torch.optim.*",  # optimisers and torch.optim.lr_scheduler
    "lightning.pytorch.Trainer",
    "lightning.pytorch.callbacks.*",
    "lightning.pytorch.loggers.*",
    "optuna.samplers.*",
    "optuna.storages.*",
    # hydra-optuna-sweeper's sampler configs (nsgaii, nsgaiii) name factories there.
    "hydra_plugins.hydra_optuna_sweeper.*",
)


def is_allowed(target: str) -> bool:
    for pattern in ALLOWED_TARGETS:
        if pattern.endswith(".*") and target.startswith(pattern[:-1]):
            return True
        if target == pattern:
            return True
    return False


def _targets(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        for key in node.keys():
            child = node._get_node(key)
            full = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield full, node.get("_target_")
            else:
                yield from _targets(child, full)
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from _targets(node._get_node(i), f"{path}[{i}]")


def check_targets(cfg: Any, skip: tuple[str, ...] = ("hydra",)) -> None:
    """One line naming the first ``_target_`` outside :data:`ALLOWED_TARGETS`
    (Hydra's own section, which selects its plugins, is left to Hydra)."""
    for key in cfg.keys():
        if key in skip:
            continue
        for full, target in _targets(cfg._get_node(key), str(key)):
            if not isinstance(target, str) or not is_allowed(target):
                raise MoAError(
                    f"{full}={target}: this target is not allowed in a moa-lit config; expected one of "
                    f"{', '.join(ALLOWED_TARGETS)}"
                )


def with_allowed_targets(fn):
    """Run ``fn`` with Hydra's execution whitelist set to :data:`ALLOWED_TARGETS`,
    for entry points that call ``instantiate`` outside ``hydra.main`` (Hydra
    1.4 warns on, and 1.5 refuses, an ``instantiate`` without one)."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        from hydra.utils import execution_whitelist

        with execution_whitelist(ALLOWED_TARGETS):
            return fn(*args, **kwargs)

    return wrapped
