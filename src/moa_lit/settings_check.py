"""Every setting a user sets, checked by type and range before any work starts,
from one table: a wrong value is one line naming the key, the value and what
was expected (``MoAError``: exit status 2), never a traceback from deep inside
training. ``TRAIN``, ``PREDICT`` and ``MERGE`` map each key to its ``Spec``;
keys absent from a config (another model's ``model.net.*``) are skipped.

Values are checked as composed (after Hydra's parsing of the command line:
``cv.n_folds=abc`` is the text 'abc', ``cv.n_folds=2.5`` a float), so a
number given as text is refused rather than guessed at."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from moa_lit.errors import MoAError
from moa_lit.data.synthetic import VARIANTS as SYNTHETIC_VARIANTS
from moa_lit.models.heads import ACTIVATIONS

INT, FLOAT, BOOL, TEXT, PATH, CHOICE, INT_LIST, CLIP = "int", "float", "bool", "text", "path", "choice", "int list", "clip"


@dataclass(frozen=True)
class Spec:
    kind: str
    low: float | None = None  # inclusive unless low_open
    high: float | None = None  # inclusive unless high_open
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    choices: tuple = ()
    non_empty: bool = False  # lists: at least one element

    def describe(self) -> str:
        if self.kind == CHOICE:
            text = f"one of {', '.join(dict.fromkeys(map(str, self.choices)))}"
        elif self.kind == BOOL:
            text = "true or false"
        elif self.kind == TEXT:
            text = "a text"
        elif self.kind == PATH:
            text = "a path"
        elif self.kind == CLIP:
            text = "[lo, hi] with 0 <= lo < hi <= 1, e.g. [0.0005, 0.999]"
        elif self.kind == INT_LIST:
            text = "a list of distinct whole numbers" + (f" >= {self.low:g}" if self.low is not None else "")
            text += ", e.g. [0,1,2]"
        else:
            text = "a whole number" if self.kind == INT else "a number"
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
            if self.high is not None:
                bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
            if bounds:
                text += " " + " and ".join(bounds)
        return text + (" (or null)" if self.nullable else "")


def _int(low=None, high=None, **kw) -> Spec:
    return Spec(INT, low, high, **kw)


def _float(low=None, high=None, **kw) -> Spec:
    return Spec(FLOAT, low, high, **kw)


def _precisions() -> tuple:
    """What Lightning's Trainer accepts as ``precision`` (from its own type)."""
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT

    values = (v for literal in get_args(_PRECISION_INPUT) for v in get_args(literal))
    return tuple(dict.fromkeys(values, None))  # 32 and "32" both, each once


BOOLEAN = Spec(BOOL)
POSITIVE = _float(0, low_open=True)
RATE = _float(0, low_open=True)  # learning rates
PROBABILITY = _float(0, 1, high_open=True)  # dropout rates
STAGE_TARGETS = ("nonscored", "scored+nonscored")
FINAL_MODELS = ("fold_average", "refit", "both")

# The keys users set on the command line or in experiment files.
TRAIN: dict[str, Spec] = {
    "cv.n_folds": _int(2),
    "cv.seed": _int(0),
    "cv.drug_threshold": _int(1),
    "cv.folds": Spec(INT_LIST, 0, nullable=True, non_empty=True),
    "seeds": Spec(INT_LIST, 0, non_empty=True),
    "loader.batch_size": _int(2),  # batch norm cannot normalise a batch of one
    "loader.eval_batch_size": _int(1),
    "resume": BOOLEAN,
    "allow_worse_than_prior": BOOLEAN,
    "num_threads": _int(1, nullable=True),
    "predict.clip": Spec(CLIP, nullable=True),
    # data (synthetic and kaggle)
    "data.dir": Spec(PATH, nullable=True),
    "paths.data_dir": Spec(PATH),
    "paths.log_dir": Spec(PATH),
    "data.n_samples": _int(50),
    "data.seed": _int(0),
    "data.n_genes": _int(0),
    "data.n_cells": _int(0),
    "data.n_scored": _int(1),
    "data.n_nonscored": _int(0),
    "data.use_cache": BOOLEAN,
    "data.variant": Spec(CHOICE, choices=SYNTHETIC_VARIANTS),
    # features
    "features.rank_gauss": BOOLEAN,
    "features.n_quantiles": _int(2),
    "features.pca_genes": _int(0),
    "features.pca_cells": _int(0),
    "features.factor_analysis_genes": _int(0),
    "features.factor_analysis_cells": _int(0),
    "features.row_stats": BOOLEAN,
    "features.variance_threshold": _float(0, nullable=True),
    # model (every model's keys; the absent ones are skipped)
    "model.net.hidden_size": _int(1),
    "model.net.n_layers": _int(1),
    "model.net.n_blocks": _int(1),
    "model.net.channels": _int(1),
    "model.net.length": _int(1),
    "model.net.conv_channels": _int(1),
    "model.net.dropout_input": PROBABILITY,
    "model.net.dropout_hidden": PROBABILITY,
    "model.net.weight_norm": BOOLEAN,
    "model.net.activation_name": Spec(CHOICE, choices=tuple(sorted(ACTIVATIONS))),
    "model.optimizer.lr": RATE,
    "model.optimizer.weight_decay": _float(0),
    "model.scheduler.max_lr": RATE,
    "model.scheduler.pct_start": _float(0, 1, low_open=True, high_open=True),
    "model.scheduler.div_factor": POSITIVE,
    "model.label_smoothing": _float(0, 0.5, high_open=True),
    # training
    "trainer.max_epochs": _int(1),
    "trainer.check_val_every_n_epoch": _int(1),
    "trainer.log_every_n_steps": _int(1),
    "trainer.deterministic": BOOLEAN,
    "trainer.gradient_clip_val": _float(0, nullable=True),
    "trainer.accumulate_grad_batches": _int(1),
    "trainer.precision": Spec(CHOICE, choices=_precisions()),
    "callbacks.progress_bar.refresh_rate": _int(0),
    # stages
    "pretrain.enabled": BOOLEAN,
    "pretrain.targets": Spec(CHOICE, choices=STAGE_TARGETS),
    "pretrain.max_epochs": _int(1),
    "pretrain.lr": _float(0, low_open=True, nullable=True),
    "pretrain.freeze_body_epochs": _int(0),
    "pretrain.body_lr_scale": POSITIVE,
    "stack.enabled": BOOLEAN,
    "stack.targets": Spec(CHOICE, choices=STAGE_TARGETS),
    "stack.inner_folds": _int(2),
    "stack.max_epochs": _int(1),
    "stack.lr": _float(0, low_open=True, nullable=True),
    # final models (training/refit.py)
    "final_model": Spec(CHOICE, choices=FINAL_MODELS),
    "refit.seeds": Spec(INT_LIST, 0, non_empty=True),
    "refit.epoch_scale": _float(0, 10, low_open=True),
}

PREDICT: dict[str, Spec] = {
    "run_dir": Spec(PATH),
    "input": Spec(PATH),
    "output": Spec(PATH, nullable=True),
    "top_k": _int(0, nullable=True),
    "num_threads": _int(1, nullable=True),
}

MERGE: dict[str, Spec] = {
    "output_dir": Spec(PATH, nullable=True),
}

_ABSENT = object()


def _value(cfg: DictConfig, key: str) -> Any:
    try:
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False, throw_on_resolution_failure=True)
    except OmegaConfBaseException as err:
        reason = " ".join(str(err).split())[:200]
        raise MoAError(f"{key}: cannot be resolved ({reason})") from None
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return value


def _shown(value: Any) -> str:
    """A value as it would be typed on the command line."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, list):
        shown = "[" + ",".join(_shown(v) for v in value[:10]) + (",...]" if len(value) > 10 else "]")
        return shown
    return repr(value) if isinstance(value, str) else str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _in_range(spec: Spec, value: float) -> bool:
    if spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low):
        return False
    if spec.high is not None and (value >= spec.high if spec.high_open else value > spec.high):
        return False
    return True


def _fits(spec: Spec, value: Any) -> bool:
    if value is None:
        return spec.nullable
    if spec.kind == INT:
        return _is_int(value) and _in_range(spec, value)
    if spec.kind == FLOAT:
        return _is_number(value) and _in_range(spec, value)
    if spec.kind == BOOL:
        return isinstance(value, bool)
    if spec.kind == TEXT:
        return isinstance(value, str) and value.strip() != ""
    if spec.kind == PATH:  # Hydra reads a folder named 2024 as a number
        return (isinstance(value, str) or _is_int(value)) and str(value).strip() != ""
    if spec.kind == CHOICE:
        return value in spec.choices and not isinstance(value, bool)
    if spec.kind == INT_LIST:
        values = value if isinstance(value, list) else [value]
        return (
            all(_is_int(v) and _in_range(spec, v) for v in values)
            and (len(values) > 0 or not spec.non_empty)
            and len(set(values)) == len(values)
        )
    if spec.kind == CLIP:
        return (
            isinstance(value, list)
            and len(value) == 2
            and all(_is_number(v) for v in value)
            and 0.0 <= value[0] < value[1] <= 1.0
        )
    raise AssertionError(spec.kind)


def check_settings(cfg: DictConfig, table: dict[str, Spec]) -> None:
    """The first setting of ``cfg`` that does not fit ``table``, as a MoAError."""
    for key, spec in table.items():
        value = _value(cfg, key)
        message = None if value is _ABSENT else refusal(key, value, spec)
        if message:
            raise MoAError(message)


def refusal(key: str, value: Any, spec: Spec) -> str | None:
    """The line refusing ``key=value``, or None when the value fits ``spec``."""
    if _fits(spec, value):
        return None
    detail = ""
    if spec.kind == INT_LIST and isinstance(value, list):
        repeated = [v for v, n in Counter(map(repr, value)).items() if n > 1]
        if repeated:
            detail = f" ({repeated[0]} is repeated: each would train into the same folder)"
    if spec.kind == PATH and isinstance(value, float):
        detail = f"; a folder name that reads as a number is quoted: {key}='<name>'"
    return f"{key}={_shown(value)}: expected {spec.describe()}{detail}"


def check_fields(settings: Any, group: str) -> None:
    """A typed settings object (:mod:`moa_lit.settings`) against this table's
    keys under ``group``: the typed groups keep no ranges of their own."""
    prefix = f"{group}."
    for key, spec in TRAIN.items():
        if key.startswith(prefix) and hasattr(settings, key[len(prefix):]):
            value = getattr(settings, key[len(prefix):])
            if isinstance(value, (ListConfig, tuple)):
                value = list(value)
            message = refusal(key, value, spec)
            if message:
                raise MoAError(message)


def check_train_settings(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """All of training's settings, and the combinations that would be silently
    ignored; ``overrides``: the command line's ``key=value`` arguments. (Fold
    numbers beyond cv.n_folds: ``settings.CVSettings``.)"""
    check_settings(cfg, TRAIN)
    _check_ignored_rate(cfg, overrides or [])


def _check_ignored_rate(cfg: DictConfig, overrides: list[str]) -> None:
    """model.optimizer.lr set on the command line while a OneCycle schedule
    sets the rate from model.scheduler.max_lr: it would change nothing."""
    given = [arg for arg in overrides if arg.lstrip("+~").split("=", 1)[0] == "model.optimizer.lr"]
    scheduler = _value(cfg, "model.scheduler")
    if given and isinstance(scheduler, dict) and "max_lr" in scheduler:
        raise MoAError(
            f"{given[-1].lstrip('+~')} has no effect: the OneCycle schedule sets the learning rate "
            f"(peak model.scheduler.max_lr={scheduler['max_lr']}); set model.scheduler.max_lr instead, "
            "or add model.scheduler=null for a constant model.optimizer.lr"
        )


def command_line_overrides() -> list[str]:
    """The ``key=value`` arguments of the running Hydra job, or [] outside one."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def combination_error(cfg, overrides: list[str]) -> str | None:
    """One line for settings that each pass their own check but cannot run
    together (final_model=refit with pretraining, model.* in an ensemble, ...),
    or None. The commands check the same again where they act."""
    from moa_lit.ensemble import refuse_model_overrides
    from moa_lit.errors import MoAError
    from moa_lit.training.refit import check_refit_possible

    try:
        check_refit_possible(
            str(cfg.get("final_model", "fold_average")), bool(cfg.pretrain.enabled), bool(cfg.stack.enabled),
            cfg.cv.folds is not None,
        )
        from moa_lit.settings import EnsembleSettings, typed

        if cfg.get("ensemble") is not None and typed(cfg.ensemble, EnsembleSettings).models is not None:
            refuse_model_overrides(overrides)
        _check_ignored_rate(cfg, overrides)
    except MoAError as err:
        return str(err)
    return None
