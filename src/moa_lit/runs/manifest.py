"""``run.json``: what a saved run needs to score new profiles without its
training data. It is also the marker of a folder moa-lit made: a command
writes it first (:func:`started_marker`). ``FORMAT_VERSION`` changes whenever
a run folder written by one moa-lit cannot be read by another."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from moa_lit import __version__, schema
from moa_lit.errors import MoAError
from moa_lit.runs import files

# 2: labels.csv (every training row), data.json, clip and blend members in run.json.
# 3: labels.csv lists each row's positive targets as a JSON list (names may hold "|");
#    preprocessor.skops (skops.io, no pickle) instead of preprocessor.joblib; run.json written first.
FORMAT_VERSION = 3
# What run.json must hold besides its format version (read in this order).
_REQUIRED = ("moa_lit_version", "genes", "cells", "target_names", "output_columns", "seeds", "folds")


@dataclass(frozen=True)
class BlendMember:
    run: str  # the member run's folder: absolute, or relative to the blend's own folder
    weight: float

    def folder(self, blend_dir: Path) -> Path:
        return Path(blend_dir) / self.run  # an absolute run stays as it is


@dataclass(frozen=True, kw_only=True)
class RunManifest:
    """The fields in run.json's order (``asdict`` writes it)."""

    format_version: int = FORMAT_VERSION
    moa_lit_version: str = __version__
    genes: tuple[str, ...]
    cells: tuple[str, ...]
    target_names: list[str]  # the models' output order
    output_columns: list[str]  # sig_id + targets, in the order submissions are written
    seeds: list[int]
    folds: list[int]
    clip: tuple[float, float] | None = None  # predict.clip of the run
    members: list[BlendMember] = field(default_factory=list)  # a blend's runs; empty otherwise
    final_model: str = "fold_average"  # fold_average, refit or both (training/refit.py)
    refit_seeds: list[int] = field(default_factory=list)  # models/refit/seed<s>/ when final_model is refit or both

    def __post_init__(self) -> None:
        """Each field as its type (a malformed run.json fails here)."""
        typed = dict(
            moa_lit_version=str(self.moa_lit_version),
            genes=tuple(self.genes),
            cells=tuple(self.cells),
            target_names=list(self.target_names),
            output_columns=list(self.output_columns),
            seeds=[int(s) for s in self.seeds],
            folds=[int(k) for k in self.folds],
            clip=None if self.clip is None else (float(self.clip[0]), float(self.clip[1])),
            members=[m if isinstance(m, BlendMember) else BlendMember(str(m["run"]), float(m["weight"])) for m in self.members],
            final_model=str(self.final_model),
            refit_seeds=[int(s) for s in self.refit_seeds],
        )
        for name, value in typed.items():
            object.__setattr__(self, name, value)
        if self.final_model not in ("fold_average", "refit", "both"):
            raise ValueError(f"final_model {self.final_model!r}")

    @classmethod
    def new(cls, layout, target_names, seeds, folds, clip=None, final_model="fold_average", refit_seeds=()) -> "RunManifest":
        # The reader refuses a sample submission whose header is not sig_id + the targets.
        return cls(
            genes=layout.genes, cells=layout.cells, target_names=target_names, output_columns=[schema.ID, *target_names],
            seeds=seeds, folds=folds, clip=clip, final_model=final_model,
            refit_seeds=refit_seeds if final_model != "fold_average" else [],
        )

    @property
    def layout(self) -> schema.FeatureLayout:
        return schema.FeatureLayout(self.genes, self.cells)

    @property
    def uses_fold_models(self) -> bool:
        return self.final_model in ("fold_average", "both")

    @property
    def uses_refit_models(self) -> bool:
        return self.final_model in ("refit", "both")

    def with_folds(self, folds) -> "RunManifest":
        return replace(self, folds=sorted(int(k) for k in folds))

    @property
    def is_blend(self) -> bool:
        return bool(self.members)


def started_marker() -> dict:
    """What run.json holds from a run's start until its manifest is written."""
    return {"format_version": FORMAT_VERSION, "moa_lit_version": __version__}


def check_format_version(path: Path) -> dict:
    """The JSON at ``path``, or a one-line MoAError when it is not valid JSON or
    of another format version than this moa-lit reads."""
    try:
        raw = files.read_json(path)
    except ValueError as err:
        raise MoAError(f"{path}: not valid JSON ({err}); expected the file written by training") from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        written_by = raw.get("moa_lit_version", "an unknown version") if isinstance(raw, dict) else "an unknown version"
        raise MoAError(
            f"{path}: run format version {version} (written by moa-lit {written_by}); this moa-lit "
            f"{__version__} reads format {FORMAT_VERSION}: use the moa-lit version that trained it, or retrain"
        )
    return raw


def parse_manifest(path: Path) -> RunManifest:
    """The manifest at ``path``, or a one-line MoAError saying what is wrong with it."""
    if not path.is_file():
        raise MoAError(
            f"{path}: missing; expected the run.json that `python -m moa_lit.train` writes into every run "
            f"(is run_dir a training run of moa-lit {__version__}?)"
        )
    raw = check_format_version(path)
    if raw.keys() == started_marker().keys():
        raise MoAError(f"{path}: the run stopped before it read its data (run.json holds only its start); expected a finished run")
    try:
        return RunManifest(**{f.name: raw[f.name] for f in fields(RunManifest) if f.name in raw or f.name in _REQUIRED})
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise MoAError(f"{path}: malformed ({type(err).__name__}: {err}); expected the file written by training") from None
