"""Every setting a user sets, declared once with its constraints and checked
once, at the start of each command (scikit-learn's ``_parameter_constraints``).

The schemas are dataclasses in Hydra's ConfigStore, so an unknown key is
refused when the config is composed. Whole numbers, booleans and texts are
typed ``Any`` so the checker sees the value as given (``resume=maybe``,
``cv.n_folds=2.5`` are refused, never converted). A ``_target_`` node is
checked against the constraints of the moa-lit class it builds (of Lightning's
Trainer, :data:`TRAINER_NEEDS`); the rest is the library's."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from moa_lit.errors import MoAError

# What train returns and an Optuna search minimises (``optimized_metric``).
OPTIMIZED_METRICS = ("oof_logloss_new_drugs", "oof_logloss", "oof_logloss_treated")
STAGE_TARGETS = ("nonscored", "scored+nonscored")
FINAL_MODELS = ("fold_average", "refit", "both")
CALIBRATION_METHODS = ("none", "temperature", "affine")


# -- constraints ---------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Constraint:
    """What a setting's value must be (``fits``; None only when ``nullable``),
    said as ``text`` in a refusal and in docs/configuration.md, whose type
    column is ``kind``; ``detail(key, value)`` adds a hint to a refusal."""

    kind: str
    text: str
    fits: Callable[[Any], bool]
    nullable: bool = False
    detail: Callable[[str, Any], str] = lambda key, value: ""

    def describe(self) -> str:
        return self.text + (" (or null)" if self.nullable else "")

    def refusal(self, key: str, value: Any) -> str | None:
        """The line refusing ``key=value``, or None when the value fits."""
        if self.nullable if value is None else self.fits(value):
            return None
        return f"{key}={shown(value)}: expected {self.describe()}{self.detail(key, value)}"


def Interval(kind: type = int, low: float | None = None, high: float | None = None, closed: str = "both", nullable: bool = False) -> Constraint:
    """A whole number (``kind=int``) or a finite number in [low, high];
    ``closed``: which ends are included, as in scikit-learn."""
    left, right = closed in ("left", "both"), closed in ("right", "both")
    bounds = [f"{'>=' if left else '>'} {low:g}"] if low is not None else []
    bounds += [f"{'<=' if right else '<'} {high:g}"] if high is not None else []
    name = "whole number" if kind is int else "number"

    def fits(v: Any) -> bool:
        return ((_is_int(v) if kind is int else _is_number(v)) and (low is None or (v >= low if left else v > low))
                and (high is None or (v <= high if right else v < high)))

    return Constraint(name, f"a {name} {' and '.join(bounds)}".strip(), fits, nullable)


def at_least(low: float, kind: type = int, nullable: bool = False) -> Constraint:
    return Interval(kind, low, nullable=nullable)


def Options(values: tuple) -> Constraint:
    return Constraint("choice", f"one of {', '.join(dict.fromkeys(map(str, values)))}", lambda v: not isinstance(v, bool) and v in values)


def _is_path(value: Any) -> bool:  # Hydra reads a folder named 2024 as a number
    return (isinstance(value, str) or _is_int(value)) and str(value).strip() != ""


def Path(nullable: bool = False) -> Constraint:
    return Constraint("path", "a path", _is_path, nullable, lambda key, value: (
        f"; a folder name that reads as a number is quoted: {key}='<name>'" if isinstance(value, float) else ""))


def _distinct_whole_numbers(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(_is_int(v) and v >= 0 for v in values) and len(set(values)) == len(values)


def _repeated(key: str, value: Any) -> str:
    repeated = [v for v, n in Counter(map(repr, value)).items() if n > 1] if isinstance(value, list) else []
    return f" ({repeated[0]} is repeated: each would train into the same folder)" if repeated else ""


WHOLE_NUMBERS = Constraint("list", "a list of distinct whole numbers >= 0, e.g. [0,1,2]", _distinct_whole_numbers, detail=_repeated)
POSITIVE = Interval(kind=float, low=0, closed="right")
PROBABILITY = Interval(kind=float, low=0, high=1, closed="left")  # dropout rates
BOOLEAN = Constraint("boolean", "true or false", lambda v: isinstance(v, bool))  # yes, no, 1 are refused


def shown(value: Any) -> str:
    """A value as it would be typed on the command line."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, list):
        return "[" + ",".join(shown(v) for v in value[:10]) + (",...]" if len(value) > 10 else "]")
    return repr(value) if isinstance(value, str) else str(value)


_ABSENT = object()


def _value(node: Any, key: str, full: str) -> Any:
    try:
        value = OmegaConf.select(node, key, default=_ABSENT, throw_on_missing=False, throw_on_resolution_failure=True)
        if value is not _ABSENT and OmegaConf.is_missing(node, key):  # ???: check_config says it is required
            return _ABSENT
    except OmegaConfBaseException as err:
        reason = str(err).strip().splitlines()[0][:200]
        raise MoAError(f"{full}: cannot be resolved ({reason})") from None
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_node(node: Any, constraints: dict[str, Constraint], prefix: str = "") -> dict[str, Any]:
    """The first value of ``node`` that does not fit its constraint, as a
    MoAError; returns the values found (absent keys are skipped)."""
    values = {}
    for key, constraint in constraints.items():
        value = _value(node, key, prefix + key)
        if value is _ABSENT:
            continue
        message = constraint.refusal(prefix + key, value)
        if message:
            raise MoAError(message)
        values[key] = value
    return values


# -- the typed groups ----------------------------------------------------------------------------


@dataclass
class Settings:
    """A typed group; ``together``: the checks across fields (one line, or None)."""

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {}
    usage: ClassVar[str] = ""  # the command line named when a required (``???``) setting is missing

    @staticmethod
    def together(values: dict[str, Any], prefix: str) -> str | None:
        return None


@dataclass
class CVSettings(Settings):
    n_folds: Any = 5  # folds of the cross-validation
    seed: Any = 42  # draws the folds
    # Drugs with at most this many rows go to folds whole (docs/data.md).
    drug_threshold: Any = 18
    # A subset of folds to run, e.g. [0,1]; null runs all.
    folds: Any = None

    _parameter_constraints: ClassVar = {
        "n_folds": at_least(2),
        "seed": at_least(0),
        "drug_threshold": at_least(1),
        "folds": dataclasses.replace(WHOLE_NUMBERS, nullable=True),
    }

    @staticmethod
    def together(values: dict[str, Any], prefix: str) -> str | None:
        folds, n = values.get("folds"), values.get("n_folds", 5)
        if folds is not None and any(k >= n for k in folds):
            return f"{prefix}folds={shown(folds)}: expected fold numbers in 0..{n - 1} ({prefix}n_folds={n})"
        return None

    @property
    def fold_ids(self) -> list[int]:
        return list(range(self.n_folds)) if self.folds is None else sorted(int(k) for k in self.folds)


@dataclass
class LoaderSettings(Settings):
    batch_size: Any = 128  # rows per training step (batch norm cannot normalise a batch of one: at least 2)
    eval_batch_size: Any = 8192  # rows per prediction step
    # Probability a training row becomes x + (ctl_a - ctl_b), two random training controls of its time and dose (0: off).
    control_augmentation: Any = 0.0

    _parameter_constraints: ClassVar = {
        "batch_size": at_least(2),
        "eval_batch_size": at_least(1),
        "control_augmentation": Interval(kind=float, low=0, high=1),
    }


@dataclass
class FeatureSettings(Settings):
    """Keyword arguments of ``training.features.build_feature_pipeline``."""

    rank_gauss: Any = True  # quantile-transform each g-*/c-* column to a normal distribution
    n_quantiles: Any = 100  # quantiles of that transform; at most the smallest fold's training rows
    pca_genes: Any = 0  # PCA components of the g-* columns appended (0: none)
    pca_cells: Any = 0  # PCA components of the c-* columns appended (0: none)
    factor_analysis_genes: Any = 0  # factor-analysis components of the g-* columns appended
    factor_analysis_cells: Any = 0  # factor-analysis components of the c-* columns appended
    row_stats: Any = False  # append each row's mean, std, ... of its g-* and c-* values
    variance_threshold: Optional[float] = None  # drop columns whose variance is at most this; null: keep all
    control_centring: Any = False  # first subtract the mean of the training controls of the row's time and dose from g-*/c-*

    _parameter_constraints: ClassVar = {
        "rank_gauss": BOOLEAN,
        "n_quantiles": at_least(2),
        "pca_genes": at_least(0),
        "pca_cells": at_least(0),
        "factor_analysis_genes": at_least(0),
        "factor_analysis_cells": at_least(0),
        "row_stats": BOOLEAN,
        "variance_threshold": at_least(0, float, nullable=True),
        "control_centring": BOOLEAN,
    }

    def check_against_data(self, rows: int, n_genes: int, n_cells: int) -> None:
        """Refuses a count the data cannot give; ``rows``: the smallest fold's
        training rows (the features are fitted on them)."""
        for key, n, cols, what in (
            ("pca_genes", self.pca_genes, n_genes, "g-*"),
            ("pca_cells", self.pca_cells, n_cells, "c-*"),
            ("factor_analysis_genes", self.factor_analysis_genes, n_genes, "g-*"),
            ("factor_analysis_cells", self.factor_analysis_cells, n_cells, "c-*"),
        ):
            if n > min(rows, cols):
                why = "the training rows of the smallest fold" if rows < cols else f"the number of {what} columns"
                raise MoAError(f"features.{key}={n}: expected at most {min(rows, cols)}, {why}")
        if self.rank_gauss and self.n_quantiles > rows:
            raise MoAError(f"features.n_quantiles={self.n_quantiles}: expected at most {rows}, the training rows of the smallest fold")


_STAGE = {
    "enabled": BOOLEAN,
    "targets": Options(values=STAGE_TARGETS),
    "max_epochs": at_least(1),
    "lr": Interval(nullable=True, kind=float, low=0, closed="right"),
}


@dataclass
class AuxiliaryStage(Settings):
    """What both auxiliary stages share: a model of the non-scored (or scored +
    non-scored) targets trained on the fold's training rows."""

    enabled: Any = False  # run this stage before the scored model, on each fold's training rows
    targets: Any = "nonscored"  # what the stage learns: nonscored or scored+nonscored
    max_epochs: Any = 10  # the stage's epochs
    lr: Optional[float] = None  # the stage's peak learning rate; null: the model's

    key: ClassVar[str] = "stage"  # the config group, named in errors


@dataclass
class PretrainSettings(AuxiliaryStage):
    freeze_body_epochs: Any = 0  # fine-tuning trains only the new head for these epochs
    body_lr_scale: float = 1.0  # the body's learning rate during fine-tuning, relative to the head's
    key: ClassVar[str] = "pretrain"

    _parameter_constraints: ClassVar = {**_STAGE, "freeze_body_epochs": at_least(0), "body_lr_scale": POSITIVE}


@dataclass
class StackSettings(AuxiliaryStage):
    inner_folds: Any = 3  # inner folds of the out-of-fold auxiliary predictions
    key: ClassVar[str] = "stack"

    _parameter_constraints: ClassVar = {**_STAGE, "inner_folds": at_least(2)}


@dataclass
class PredictSettings(Settings):
    # Written (and scored) predictions clipped to [lo, hi]; controls stay 0.
    clip: Any = None

    _parameter_constraints: ClassVar = {"clip": Constraint(
        "[lo, hi]", "[lo, hi] with 0 <= lo < hi <= 1, e.g. [0.0005, 0.999]",
        lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_number, v)) and 0.0 <= v[0] < v[1] <= 1.0, True,
    )}

    @property
    def clip_range(self) -> tuple[float, float] | None:
        return None if self.clip is None else (float(self.clip[0]), float(self.clip[1]))


@dataclass
class CalibrationSettings(Settings):
    """Per-target calibration of the final probabilities (``training/calibration.py``)."""

    # none; temperature: sigmoid(logit(p) / T_j); affine: sigmoid(a_j logit(p) + b_j), fitted on the OOF new-drug rows.
    method: Any = "none"
    # Pull toward no change: a target whose positives come from D drugs moves about D / (D + strength) of the way to its fit.
    strength: float = 10.0

    _parameter_constraints: ClassVar = {"method": Options(values=CALIBRATION_METHODS), "strength": POSITIVE}


@dataclass
class EnsembleSettings(Settings):
    """``experiment=ensemble``: the model families trained on the same folds
    and blended (``moa_lit/ensemble.py``); a member's name is its folder."""

    models: Optional[Dict[str, Any]] = None  # member name -> model config (experiment=ensemble); null: no ensemble

    @staticmethod
    def together(values: dict[str, Any], prefix: str) -> str | None:
        models = values.get("models")
        if models is None:
            return None
        names = list(models)
        if len(names) < 2:
            return f"{prefix}models={names}: expected at least two model families, e.g. experiment=ensemble"
        for name, model in models.items():
            if not all(c.isalnum() or c in "_-" for c in str(name)):
                return f"{prefix}models.{name}: expected member names of letters, digits, _ and - (each is a folder name)"
            if not isinstance(model, dict) or "net" not in model:
                return (
                    f"{prefix}models.{name}={'null' if model is None else model!r}: expected a model config, "
                    f"e.g. +model@{prefix}models.{name}=linear"
                )
        return None

    _parameter_constraints: ClassVar = {"models": Constraint("mapping", "a mapping of names to configs", lambda v: isinstance(v, dict), True)}


@dataclass
class RefitSettings(Settings):
    """``final_model=refit|both``: models trained on every training row for
    the epochs the folds chose (``moa_lit/training/refit.py``)."""

    seeds: Any = field(default_factory=lambda: [0, 1, 2])  # one refitted model per seed
    # Epochs = round(median best epoch count of the folds x epoch_scale).
    epoch_scale: float = 1.0

    _parameter_constraints: ClassVar = {
        "seeds": WHOLE_NUMBERS,
        "epoch_scale": Interval(kind=float, low=0, high=10, closed="right"),
    }


@dataclass
class PathsSettings(Settings):
    # Relative paths resolve against the directory the command is run from.
    data_dir: Any = "data"
    log_dir: Any = "outputs"  # where runs go: <log_dir>/<command>/runs/<time>
    output_dir: Any = "${hydra:runtime.output_dir}"  # the run's folder (Hydra's job folder)

    _parameter_constraints: ClassVar = {"data_dir": Path(), "log_dir": Path()}


# What the fold loop needs of Lightning's Trainer (the other arguments are
# Lightning's to check): at least one epoch, validated at least once (the
# best epoch is chosen on it), a non-negative clip, and float32 parameters
# (the batches are float32 tensors: 64-true or 16-true fail inside a layer).
TRAINER_NEEDS: dict[str, Constraint] = {
    "precision": Options(values=("auto", "32-true", "32", 32, "16-mixed", "bf16-mixed")),
    "max_epochs": at_least(1),
    "check_val_every_n_epoch": at_least(1),
    "log_every_n_steps": at_least(1),
    "deterministic": BOOLEAN,
    "gradient_clip_val": at_least(0, float, nullable=True),
    "accumulate_grad_batches": at_least(1),
}


def _trainer_together(values: dict[str, Any], prefix: str) -> str | None:
    every, epochs = values.get("check_val_every_n_epoch"), values.get("max_epochs")
    if every is not None and epochs is not None and every > epochs:
        return (
            f"{prefix}check_val_every_n_epoch={every}: expected at most {prefix}max_epochs={epochs}, "
            "or no epoch is validated and no best epoch can be chosen"
        )
    return None


@dataclass
class TrainConfig(Settings):
    """The schema of ``conf/train.yaml``; ``data``, ``model``, ``trainer`` ...
    are ``_target_`` nodes, checked against the class they build."""

    cv: CVSettings = field(default_factory=CVSettings)
    loader: LoaderSettings = field(default_factory=LoaderSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    predict: PredictSettings = field(default_factory=PredictSettings)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    ensemble: EnsembleSettings = field(default_factory=EnsembleSettings)
    refit: RefitSettings = field(default_factory=RefitSettings)
    paths: PathsSettings = field(default_factory=PathsSettings)
    # What makes the submission and what predict uses: the fold models'
    # average, models refitted on all rows, or the mean of both.
    final_model: Any = "fold_average"
    seeds: Any = field(default_factory=lambda: [0])  # one model per seed and fold; predictions averaged over seeds
    resume: Any = False  # continue an interrupted run in its folder (resume=true hydra.run.dir=<run>)
    # Accept a run whose OOF log loss is worse than the prior's, or whose loss diverged (else exit 3).
    allow_worse_than_prior: Any = False
    num_threads: Any = None  # CPU threads for torch; null: the cores given divided by the jobs run at once
    optimized_metric: Any = "oof_logloss_new_drugs"  # what train returns and a search minimises
    data: Any = None
    model: Any = None
    callbacks: Any = None
    logger: Any = None
    trainer: Any = None

    _parameter_constraints: ClassVar = {
        "final_model": Options(values=FINAL_MODELS),
        "seeds": WHOLE_NUMBERS,
        "resume": BOOLEAN,
        "allow_worse_than_prior": BOOLEAN,
        "num_threads": at_least(1, nullable=True),
        "optimized_metric": Options(values=OPTIMIZED_METRICS),
    }


@dataclass
class PredictConfig(Settings):
    """The schema of ``conf/predict.yaml`` (its comments say what each key does)."""

    usage: ClassVar[str] = "python -m moa_lit.predict run_dir=<training run folder> input=<features.csv>"

    run_dir: Any = "???"  # a training run's folder (it holds run.json and models/)
    input: Any = "???"  # a features CSV in the layout of test_features.csv
    output: Any = None  # null: <input name>_predictions.csv in the current directory
    top_k: Any = 0  # N > 0 also writes <output name>_top<N>.csv: each sample's N most likely MoAs
    explain: Any = False  # also write <output name>_explained/: one call per compound, its inputs, its nearest known compounds
    compounds: Any = None  # a CSV of sig_id and compound_column naming each row's compound; null: one per row
    compound_column: Any = "compound_id"  # the compounds file's column of compound names
    pooling: Any = "mean"  # how a compound's rows make one call: mean or logit_mean
    k: Any = 5  # nearest known compounds per query compound
    reference: Any = None  # the labelled training compounds' folder; null: the data the run was trained on
    ig_steps: Any = 16  # integration steps of Integrated Gradients
    explain_dir: Any = None  # null: <output name>_explained next to the output
    device: Any = "auto"  # auto: the GPU when there is one, else the CPU
    num_threads: Any = None  # CPU threads for torch; null uses all cores

    _parameter_constraints: ClassVar = {
        "run_dir": Path(),
        "input": Path(),
        "output": Path(nullable=True),
        "top_k": at_least(0, nullable=True),
        "explain": BOOLEAN,
        "compounds": Path(nullable=True),
        "compound_column": Constraint("text", "a text", lambda v: isinstance(v, str) and v.strip() != ""),
        "k": at_least(1),
        "reference": Path(nullable=True),
        "ig_steps": at_least(1),
        "explain_dir": Path(nullable=True),
        "device": Options(values=("auto", "cpu", "cuda")),
        "num_threads": at_least(1, nullable=True),
    }


PATHS = Constraint("path or list of paths", "a list of folders, e.g. [dir1,dir2]",
                   lambda v: all(map(_is_path, v if isinstance(v, list) else [v])))


@dataclass
class MergeConfig(Settings):
    """The schema of ``conf/merge.yaml``."""

    runs: Any = field(default_factory=list)  # the run folders, e.g. [dir1,dir2]
    output_dir: Any = None  # null: a new folder under paths.log_dir
    paths: PathsSettings = field(default_factory=PathsSettings)

    _parameter_constraints: ClassVar = {"runs": PATHS, "output_dir": Path(nullable=True)}


@dataclass
class BlendConfig(MergeConfig):
    """The schema of ``conf/blend.yaml``."""

    runs: Any = None  # blend says what is missing

    _parameter_constraints: ClassVar = {**MergeConfig._parameter_constraints, "runs": dataclasses.replace(PATHS, nullable=True)}


@dataclass
class ReportConfig(Settings):
    """The schema of ``conf/report.yaml``."""

    usage: ClassVar[str] = "python -m moa_lit.report run_dir=<training run folder>"

    run_dir: Any = "???"  # a training run's folder: its report/ is rebuilt

    _parameter_constraints: ClassVar = {"run_dir": Path()}


SCHEMAS = {"train": TrainConfig, "predict": PredictConfig, "merge": MergeConfig, "blend": BlendConfig, "report": ReportConfig}


for _name, _schema in SCHEMAS.items():  # where each entry config's defaults list finds its schema
    ConfigStore.instance().store(name=f"{_name}_schema", node=_schema)


# -- the one check -------------------------------------------------------------------------------


def library_booleans(built: Any) -> dict[str, Constraint]:
    """A library class's ``bool`` / ``Optional[bool]`` parameters, read from its
    signature: torch and Lightning take any truthy value there
    (``+model.optimizer.fused=maybe`` ran fused) without a word."""
    import inspect

    try:
        parameters = inspect.signature(built).parameters.values()
    except (TypeError, ValueError):  # no signature to read
        return {}
    kinds = {"bool": False, "<class 'bool'>": False, "Optional[bool]": True, "bool | None": True}
    return {p.name: dataclasses.replace(BOOLEAN, nullable=kinds[text]) for p in parameters
            if (text := str(p.annotation).replace("typing.", "")) in kinds}


def target_constraints(target: Any) -> tuple[dict[str, Constraint], Any]:
    """The constraints (and the check across them) of the class a ``_target_``
    builds: a moa-lit class declares its own; a library class's true/false
    parameters are read from its signature (the Trainer's with :data:`TRAINER_NEEDS`)."""
    from moa_lit.targets import is_allowed

    if not is_allowed(target):  # only an allow-listed class is looked up
        return {}, Settings.together
    from hydra.utils import get_object

    built = get_object(target)
    if target == "lightning.pytorch.Trainer":
        return {**library_booleans(built), **TRAINER_NEEDS}, _trainer_together
    if target.startswith("moa_lit."):
        return getattr(built, "_parameter_constraints", {}), Settings.together
    return library_booleans(built), Settings.together


def groups(schema: type[Settings]) -> dict[str, type[Settings]]:
    """The typed groups a schema nests (``cv``, ``loader``, ...)."""
    return {f.name: f.default_factory for f in dataclasses.fields(schema)
            if isinstance(f.default_factory, type) and issubclass(f.default_factory, Settings)}


def check_config(cfg: DictConfig, schema: type[Settings], prefix: str = "") -> None:
    """The first setting of a command's config that does not fit its schema's
    constraints or its ``_target_`` class's, as one MoAError line."""
    missing = [key for key in schema._parameter_constraints if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise MoAError(f"{prefix}{missing[0]} is required: {schema.usage}")
    values = check_node(cfg, schema._parameter_constraints, prefix)
    message = schema.together(values, prefix)
    for name, group in groups(schema).items():
        if name in cfg:
            check_config(cfg[name], group, f"{prefix}{name}.")
    if message:
        raise MoAError(message)
    if prefix == "":
        from moa_lit.targets import target_nodes

        for path, node in target_nodes(cfg):
            if path.split(".", 1)[0] != "hydra":
                constraints, together = target_constraints(node.get("_target_"))
                message = together(check_node(node, constraints, f"{path}."), f"{path}.")
                if message:
                    raise MoAError(message)


def typed(cfg: DictConfig, name: str, schema: type[Settings] = TrainConfig) -> Settings:
    """The composed group ``name`` (``cv``, ``loader``, ...) as its settings
    object (checked by :func:`check_config` at the command's start); built
    when asked for, so no other group's interpolation is resolved early."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(groups(schema)[name]), cfg[name]))


def command_line_overrides() -> list[str]:
    """The ``key=value`` arguments of the running Hydra job, or [] outside one."""
    from hydra.core.hydra_config import HydraConfig

    return OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False) if HydraConfig.initialized() else []


def check_ignored_rate(cfg: DictConfig, overrides: list[str]) -> None:
    """model.optimizer.lr set on the command line while a OneCycle schedule
    sets the rate from model.scheduler.max_lr: it would change nothing."""
    given = [arg for arg in overrides if arg.lstrip("+~").split("=", 1)[0] == "model.optimizer.lr"]
    scheduler = OmegaConf.select(cfg, "model.scheduler", default=None)
    if given and scheduler is not None and "max_lr" in scheduler:
        raise MoAError(
            f"{given[-1].lstrip('+~')} has no effect: the OneCycle schedule sets the learning rate "
            f"(peak model.scheduler.max_lr={scheduler['max_lr']}); set model.scheduler.max_lr instead, "
            "or add model.scheduler=null for a constant model.optimizer.lr"
        )
