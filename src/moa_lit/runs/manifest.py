"""``run.json``: what a saved run needs to score new profiles without its
training data. Written at the start of training, read by ``predict``: the
feature layout the models were fitted on (g-*/c-* names), the target names in
model-output and submission order, the seeds and folds whose models make the
ensemble, and the format version of the run directory.

``FORMAT_VERSION`` changes whenever a run directory written by one moa-lit
cannot be read by another (file names, the preprocessor's pickled objects,
the checkpoint's hyperparameters); ``predict`` refuses other versions with a
one-line message instead of failing somewhere deep in unpickling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moa_lit import __version__, schema
from moa_lit.runs import files as run_files
from moa_lit.errors import MoAError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RunManifest:
    format_version: int
    moa_lit_version: str
    layout: schema.FeatureLayout
    target_names: list[str]  # the models' output order
    output_columns: list[str]  # sig_id + targets, in the order submissions are written
    seeds: list[int]
    folds: list[int]

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
        }


def write_manifest(
    run_dir: Path,
    layout: schema.FeatureLayout,
    target_names: list[str],
    submission_columns: list[str] | None,
    seeds: list[int],
    folds: list[int],
) -> RunManifest:
    manifest = RunManifest(
        format_version=FORMAT_VERSION,
        moa_lit_version=__version__,
        layout=layout,
        target_names=list(target_names),
        output_columns=list(submission_columns) if submission_columns else [schema.ID, *target_names],
        seeds=[int(s) for s in seeds],
        folds=[int(k) for k in folds],
    )
    run_files.write_json(manifest.to_json(), Path(run_dir) / run_files.RUN_MANIFEST)
    return manifest


def read_manifest(run_dir: Path) -> RunManifest:
    """The run's manifest, or a one-line MoAError saying what is wrong with the folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MoAError(f"run_dir={run_dir}: no such folder; expected a training run's output folder")
    path = run_dir / run_files.RUN_MANIFEST
    if not path.is_file():
        raise MoAError(
            f"{path}: missing; expected the run.json that `python -m moa_lit.train` writes into every run "
            f"(is run_dir a training run of moa-lit {__version__}?)"
        )
    try:
        raw = run_files.read_json(path)
    except ValueError as err:
        raise MoAError(f"{path}: not valid JSON ({err}); expected the file written by training") from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        written_by = raw.get("moa_lit_version", "an unknown version") if isinstance(raw, dict) else "an unknown version"
        raise MoAError(
            f"{path}: run format version {version} (written by moa-lit {written_by}); this moa-lit "
            f"{__version__} reads format {FORMAT_VERSION}: use the moa-lit version that trained it, or retrain"
        )
    try:
        return RunManifest(
            format_version=version,
            moa_lit_version=str(raw["moa_lit_version"]),
            layout=schema.FeatureLayout(tuple(raw["genes"]), tuple(raw["cells"])),
            target_names=list(raw["target_names"]),
            output_columns=list(raw["output_columns"]),
            seeds=[int(s) for s in raw["seeds"]],
            folds=[int(k) for k in raw["folds"]],
        )
    except (KeyError, TypeError, ValueError) as err:
        raise MoAError(f"{path}: malformed ({type(err).__name__}: {err}); expected the file written by training") from None
