"""The Python objects a config may build: moa-lit builds only the exact
classes and functions below (no module wildcards: ``moa_lit.cli.os.system``
is not ``moa_lit``'s). Any other ``_target_``, under ``hydra.*`` and in
ensemble members too, is refused with one line before anything runs; Hydra
enforces the same list on every ``instantiate`` call, its own callbacks
included (``hydra.main(execution_whitelist=...)``)."""

from __future__ import annotations

from typing import Any, Iterator

from moa_lit.errors import MoAError

ALLOWED_TARGETS: tuple[str, ...] = (
    # moa-lit's own
    "moa_lit.data.sources.load_kaggle",
    "moa_lit.data.sources.load_synthetic",
    "moa_lit.models.cnn1d.CNN1D",
    "moa_lit.models.linear.LinearModel",
    "moa_lit.models.mlp.MLP",
    "moa_lit.models.resnet.ResNet",
    "moa_lit.models.tabm.TabM",
    "moa_lit.training.callbacks.FoldCheckpoint",
    "moa_lit.training.module.MoAModule",
    "moa_lit.cli.CheckFirst",  # the Hydra callback that checks a command line before any folder is made
    # torch
    "torch.optim.Adam",
    "torch.optim.AdamW",
    "torch.optim.SGD",
    "torch.optim.lr_scheduler.OneCycleLR",
    # Lightning
    "lightning.pytorch.Trainer",
    "lightning.pytorch.callbacks.TQDMProgressBar",
    "lightning.pytorch.loggers.CSVLogger",
    "lightning.pytorch.loggers.TensorBoardLogger",
    # Optuna (hparams_search=optuna): the samplers hydra-optuna-sweeper offers, the storages
    "optuna.samplers.CmaEsSampler",
    "optuna.samplers.GPSampler",
    "optuna.samplers.QMCSampler",
    "optuna.samplers.RandomSampler",
    "optuna.samplers.TPESampler",
    "optuna.storages.JournalStorage",
    "optuna.storages.RDBStorage",
    "optuna.storages.journal.JournalFileBackend",
    # hydra-optuna-sweeper's factories (sampler=nsgaii, nsgaiii; motpe says it was removed)
    "hydra_plugins.hydra_optuna_sweeper._impl.create_nsgaii_sampler",
    "hydra_plugins.hydra_optuna_sweeper._impl.create_nsgaiii_sampler",
    "hydra_plugins.hydra_optuna_sweeper.config.raise_motpe_removed",
    # Hydra's sweepers and launchers (hydra.sweeper, hydra.launcher)
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
    "hydra_plugins.moa_lit_sweeper.optuna_sweeper.FailureTolerantOptunaSweeper",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
)


def is_allowed(target: Any) -> bool:
    return isinstance(target, str) and target in ALLOWED_TARGETS


def target_nodes(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(key, node) of every node of a config that has a ``_target_``, the node before its children."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        keys = list(node.keys())  # none of a null or missing node
        if "_target_" in keys:
            yield path, node
        for key in keys:
            if key != "_target_":
                yield from target_nodes(node._get_node(key), f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from target_nodes(node._get_node(i), f"{path}[{i}]")


def check_targets(cfg: Any) -> None:
    """One line naming the first ``_target_`` of ``cfg`` (every section,
    ``hydra`` included) outside :data:`ALLOWED_TARGETS`."""
    for path, node in target_nodes(cfg):
        key, target = f"{path}._target_" if path else "_target_", node._get_node("_target_")._value()
        if not is_allowed(target):
            raise MoAError(
                f"{key}={target}: this target is not allowed in a moa-lit config; expected one of the classes "
                "listed in moa_lit/targets.py (e.g. torch.optim.Adam, lightning.pytorch.loggers.CSVLogger)"
            )


def with_allowed_targets(fn):
    """Run ``fn`` with Hydra's execution whitelist set to :data:`ALLOWED_TARGETS`,
    for code that calls ``instantiate`` outside ``hydra.main``."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        from hydra.utils import execution_whitelist

        with execution_whitelist(ALLOWED_TARGETS):
            return fn(*args, **kwargs)

    return wrapped
