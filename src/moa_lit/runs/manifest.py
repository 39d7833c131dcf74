"""``run.json``: what a saved run needs to score new profiles without its
training data. Written at the start of training (and by ``merge`` and
``blend``), read by ``predict`` and ``report``: the feature layout the models
were fitted on (g-*/c-* names), the target names in model-output and
submission order, the seeds and folds whose models make the ensemble, the
prediction clip, and for a blend its member runs and weights.

``run.json`` is also the marker of a folder moa-lit made: a command writes it
first (:func:`started_marker`, replaced by the full manifest once the data is
read), and writes only into a folder it creates, an empty one, or one holding
its marker (:meth:`moa_lit.runs.run_dir.RunDir.check_may_write`).

``FORMAT_VERSION`` changes whenever a run directory written by one moa-lit
cannot be read by another (file names, the preprocessor's saved form, the
checkpoint's hyperparameters); other versions are refused with one line."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from moa_lit import __version__, schema
from moa_lit.errors import MoAError
from moa_lit.runs import files

# 2: labels.csv (every training row), data.json, clip and blend members in run.json.
# 3: labels.csv lists each row's positive targets as a JSON list (names may hold "|");
#    preprocessor.skops (skops.io, no pickle) instead of preprocessor.joblib; run.json written first.
FORMAT_VERSION = 3


@dataclass(frozen=True)
class BlendMember:
    run: str  # the member run's folder: absolute, or relative to the blend's own folder
    weight: float

    def folder(self, blend_dir: Path) -> Path:
        return Path(blend_dir) / self.run  # an absolute run stays as it is


@dataclass(frozen=True)
class RunManifest:
    layout: schema.FeatureLayout
    target_names: list[str]  # the models' output order
    output_columns: list[str]  # sig_id + targets, in the order submissions are written
    seeds: list[int]
    folds: list[int]
    clip: tuple[float, float] | None = None  # predict.clip of the run
    members: list[BlendMember] = field(default_factory=list)  # a blend's runs; empty otherwise
    final_model: str = "fold_average"  # fold_average, refit or both (training/refit.py)
    refit_seeds: list[int] = field(default_factory=list)  # models/refit/seed<s>/ when final_model is refit or both
    format_version: int = FORMAT_VERSION
    moa_lit_version: str = __version__

    @classmethod
    def new(
        cls, layout, target_names, submission_columns, seeds, folds, clip=None, final_model="fold_average", refit_seeds=()
    ) -> "RunManifest":
        return cls(
            layout=layout,
            target_names=list(target_names),
            output_columns=list(submission_columns) if submission_columns else [schema.ID, *target_names],
            seeds=[int(s) for s in seeds],
            folds=[int(k) for k in folds],
            clip=None if clip is None else (float(clip[0]), float(clip[1])),
            final_model=str(final_model),
            refit_seeds=[int(s) for s in refit_seeds] if final_model != "fold_average" else [],
        )

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

    def to_json(self) -> dict:
        return {
            "format_version": self.format_version,
            "moa_lit_version": self.moa_lit_version,
            "genes": list(self.layout.genes),
            "cells": list(self.layout.cells),
            "target_names": self.target_names,
            "output_columns": self.output_columns,
            "seeds": self.seeds,
            "folds": self.folds,
            "clip": None if self.clip is None else list(self.clip),
            "members": [{"run": m.run, "weight": m.weight} for m in self.members],
            "final_model": self.final_model,
            "refit_seeds": self.refit_seeds,
        }


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
    version = raw["format_version"]
    if raw.keys() == started_marker().keys():
        raise MoAError(f"{path}: the run stopped before it read its data (run.json holds only its start); expected a finished run")
    try:
        clip = raw.get("clip")
        manifest = RunManifest(
            format_version=version,
            moa_lit_version=str(raw["moa_lit_version"]),
            layout=schema.FeatureLayout(tuple(raw["genes"]), tuple(raw["cells"])),
            target_names=list(raw["target_names"]),
            output_columns=list(raw["output_columns"]),
            seeds=[int(s) for s in raw["seeds"]],
            folds=[int(k) for k in raw["folds"]],
            clip=None if clip is None else (float(clip[0]), float(clip[1])),
            members=[BlendMember(str(m["run"]), float(m["weight"])) for m in raw.get("members", [])],
            final_model=str(raw.get("final_model", "fold_average")),
            refit_seeds=[int(s) for s in raw.get("refit_seeds", [])],
        )
        if manifest.final_model not in ("fold_average", "refit", "both"):
            raise ValueError(f"final_model {manifest.final_model!r}")
        return manifest
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise MoAError(f"{path}: malformed ({type(err).__name__}: {err}); expected the file written by training") from None
