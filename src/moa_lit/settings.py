"""The typed settings of the groups users edit most (``cv``, ``loader``,
``features``, ``pretrain``, ``stack``, ``predict``, ``ensemble``, ``refit``), registered in Hydra's
ConfigStore as the schema of ``conf/train.yaml``: a wrong type or an unknown
key is refused when the config is composed. Ranges and choices are not kept
here: each object checks its fields against the one table of
:mod:`moa_lit.settings_check` when ``train.py`` turns the composed groups into
these objects (``OmegaConf.to_object``), one line naming the setting; only
checks across fields live here. Nothing below ``train.py`` reads the config."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from moa_lit.errors import MoAError
from moa_lit.settings_check import STAGE_TARGETS as AUXILIARY_TARGETS, check_fields

OPTIMIZED_METRICS = ("oof_logloss_new_drugs", "oof_logloss", "oof_logloss_treated")


@dataclass
class CVSettings:
    n_folds: int = 5
    seed: int = 42
    # Drugs with at most this many rows go to folds whole (docs/data.md).
    drug_threshold: int = 18
    folds: Optional[List[int]] = None  # a subset of folds to run; None runs all

    def __post_init__(self) -> None:
        check_fields(self, "cv")
        if self.folds is not None and any(int(k) >= self.n_folds for k in self.folds):
            ids = ",".join(str(int(k)) for k in self.folds)
            raise MoAError(f"cv.folds=[{ids}]: expected fold numbers in 0..{self.n_folds - 1} (cv.n_folds={self.n_folds})")

    @property
    def fold_ids(self) -> list[int]:
        return list(range(self.n_folds)) if self.folds is None else sorted(int(k) for k in self.folds)


@dataclass
class LoaderSettings:
    batch_size: int = 128
    eval_batch_size: int = 8192

    def __post_init__(self) -> None:
        check_fields(self, "loader")


@dataclass
class FeatureSettings:
    """Keyword arguments of ``training.features.build_feature_pipeline``."""

    rank_gauss: bool = True
    n_quantiles: int = 100
    pca_genes: int = 0
    pca_cells: int = 0
    factor_analysis_genes: int = 0
    factor_analysis_cells: int = 0
    row_stats: bool = False
    variance_threshold: Optional[float] = None

    def __post_init__(self) -> None:
        check_fields(self, "features")


@dataclass
class AuxiliaryStage:
    """What both auxiliary stages share: a model of the non-scored (or scored +
    non-scored) targets trained on the fold's training rows for a fixed
    number of epochs."""

    enabled: bool = False
    targets: str = "nonscored"
    max_epochs: int = 10
    lr: Optional[float] = None  # the stage's peak learning rate; None: the model's

    def __post_init__(self) -> None:
        check_fields(self, self.key)

    key = "stage"  # the config group, named in errors


@dataclass
class PretrainSettings(AuxiliaryStage):
    freeze_body_epochs: int = 0
    body_lr_scale: float = 1.0
    key = "pretrain"


@dataclass
class StackSettings(AuxiliaryStage):
    inner_folds: int = 3
    key = "stack"


@dataclass
class PredictSettings:
    # Written (and scored) predictions clipped to [lo, hi]; controls stay 0.
    clip: Optional[List[float]] = None

    def __post_init__(self) -> None:
        check_fields(self, "predict")
        if self.clip is not None:
            self.clip = [float(v) for v in self.clip]

    @property
    def clip_range(self) -> tuple[float, float] | None:
        return None if self.clip is None else (self.clip[0], self.clip[1])


@dataclass
class EnsembleSettings:
    """``experiment=ensemble``: the model families trained on the same folds
    and blended (``moa_lit/ensemble.py``). ``models`` maps a member's name (its
    folder under ``members/``) to a ``model`` config; None: no ensemble."""

    models: Optional[Dict[str, Any]] = None

    def __post_init__(self) -> None:
        if self.models is not None:
            names = list(self.models)
            if len(names) < 2:
                raise MoAError(f"ensemble.models={names}: expected at least two model families, e.g. experiment=ensemble")
            bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9_-]+", str(n))]
            if bad:
                raise MoAError(f"ensemble.models.{bad[0]}: expected member names of letters, digits, _ and - (each is a folder name)")
            for name, model in self.models.items():
                if not isinstance(model, dict) or "net" not in model:
                    raise MoAError(
                        f"ensemble.models.{name}={'null' if model is None else model!r}: expected a model config, e.g. +model@ensemble.models.{name}=linear"
                    )


@dataclass
class RefitSettings:
    """``final_model=refit|both``: models trained on every training row for
    the epochs the folds chose (``moa_lit/training/refit.py``)."""

    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    # Epochs = round(median best epoch count of the folds x epoch_scale).
    epoch_scale: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self, "refit")


@dataclass
class TrainConfig:
    """The schema of ``conf/train.yaml``: typed groups above; the others
    (``data``, ``model``, ``trainer`` ...) are ``_target_`` nodes that
    ``instantiate`` checks against the class they build."""

    cv: CVSettings = field(default_factory=CVSettings)
    loader: LoaderSettings = field(default_factory=LoaderSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    predict: PredictSettings = field(default_factory=PredictSettings)
    ensemble: EnsembleSettings = field(default_factory=EnsembleSettings)
    refit: RefitSettings = field(default_factory=RefitSettings)
    # What makes the submission and what predict uses: the fold models'
    # average, models refitted on all rows, or the mean of both.
    final_model: str = "fold_average"
    seeds: List[int] = field(default_factory=lambda: [0])
    resume: bool = False
    allow_worse_than_prior: bool = False
    num_threads: Optional[int] = None
    optimized_metric: str = "oof_logloss"
    data: Any = None
    model: Any = None
    callbacks: Any = None
    logger: Any = None
    trainer: Any = None
    paths: Any = None


def check_optimized_metric(name: str) -> str:
    if name not in OPTIMIZED_METRICS:
        raise MoAError(f"optimized_metric={name!r}: expected one of {list(OPTIMIZED_METRICS)}")
    return name


SCHEMA_NAME = "train_schema"


def register() -> None:
    """Put the schema where ``conf/train.yaml``'s defaults list finds it."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=TrainConfig)


register()


def typed(node, cls):
    """A composed group as its settings object (its value checks run here)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), node))
