"""``python -m moa_lit.merge runs=[dir1,dir2,...]``: runs that each trained some
folds, assembled into one complete run as if trained at once (docs/runs.md)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from moa_lit import schema
from moa_lit.cli import hydra_command
from moa_lit.errors import MoAError
from moa_lit.runs import files
from moa_lit.run_checks import end_untrusted_run
from moa_lit.runs.combine import (
    FinishedRun, carried_untrusted, check_same_data, labels_in_fold_order, new_drugs_of, output_run, read_finished,
    run_folders, score_oof, write_combined,
)
from moa_lit.runs.run_dir import RunDir, changed_settings
from moa_lit.scoring.scores import score_line
from moa_lit.settings import MergeConfig, check_config

log = logging.getLogger("moa_lit.merge")

# Settings that may differ between the parts of one cross-validation.
PER_PART_KEYS = ("cv.folds", "paths", "hydra", "num_threads", "callbacks", "logger", "trainer.enable_progress_bar", "resume")


def load_part(run_dir: Path) -> tuple[FinishedRun, dict]:
    """A part and its settings; refuses a folder that is not a finished training run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MoAError(f"runs: {run_dir} is not a folder")
    run = RunDir(run_dir)
    for name in (files.SETTINGS, files.RUN_MANIFEST, files.FOLDS, files.LABELS, files.OOF, files.SCORES):
        if not run.has(name):
            raise MoAError(f"runs: {run_dir} has no {name}; expected a finished training run")
    if run.has(files.CALIBRATION):  # train refuses calibration.method with cv.folds
        raise MoAError(f"runs: {run_dir} holds {files.CALIBRATION}, a calibrated run of every fold; expected runs of cv.folds parts")
    return read_finished(run_dir), run.read(files.SETTINGS, None)


def check_compatible(parts: list[FinishedRun], settings: list[dict]) -> None:
    """Parts of one cross-validation: the same data files, the same settings but
    cv.folds, the same fold assignment, each fold in one part; else the first difference."""
    check_same_data(parts)
    first = parts[0]
    seen_folds: dict[int, Path] = {}
    for part, part_settings in zip(parts, settings):
        changed = changed_settings(settings[0], part_settings, ignore=PER_PART_KEYS)
        if changed:
            raise MoAError(f"runs: {part.path} differs from {first.path} in {changed[0]}; expected runs that differ only in cv.folds")
        if not part.folds.equals(first.folds):
            raise MoAError(f"runs: {part.path} and {first.path} have different fold assignments (folds.csv); expected parts of one cross-validation")
        for k in part.scores["folds"]:
            if k in seen_folds:
                raise MoAError(f"runs: fold {k} was trained in both {seen_folds[k]} and {part.path}; expected each fold in one run")
            seen_folds[k] = part.path
        if (part.submission is None) != (first.submission is None):
            raise MoAError(f"runs: {part.path} and {first.path} differ in having a submission.csv")


def merge_runs(run_dirs: list[str | Path], output_dir: Path) -> dict:
    if not run_dirs:
        raise MoAError("runs=[]: expected the run folders to merge, e.g. runs=[outputs/a,outputs/b]")
    target = output_run(output_dir, [Path(d) for d in run_dirs])
    parts, settings = (list(x) for x in zip(*[load_part(Path(d)) for d in run_dirs]))
    check_compatible(parts, settings)
    first = parts[0]
    part_scores = [p.scores for p in parts]
    manifest = first.run.manifest()
    names = manifest.target_names
    fold_ids = sorted(int(k) for s in part_scores for k in s["folds"])

    fold_table = first.folds
    labels = labels_in_fold_order(first.run, fold_table, names)
    rows = np.isin(fold_table["fold"].to_numpy(), fold_ids)
    oof_frame = pd.concat([p.oof for p in parts]).set_index(schema.ID).loc[labels.ids[rows], names].reset_index()
    scores = score_oof(labels, fold_table, oof_frame, names, *new_drugs_of(first, labels))
    scores["seeds"] = part_scores[0].get("seeds")
    scores["merged_from"] = [str(p.path) for p in parts]
    scores["fold_summaries"] = [s for p in part_scores for s in p.get("fold_summaries", [])]
    scores["data"] = part_scores[0].get("data")
    scores["timings_s"] = {"total": round(sum(p["timings_s"]["total"] for p in part_scores), 3)}
    scores["wall_time_s"] = scores["timings_s"]["total"]
    scores["untrusted"], accepted = carried_untrusted(parts)

    submission = None
    if first.submission is not None:
        # Each part's test predictions average its own folds: weight by fold count.
        weights = [len(p["folds"]) for p in part_scores]
        columns = first.submission.columns
        values = sum(w * p.submission[columns[1:]].to_numpy() for w, p in zip(weights, parts)) / sum(weights)
        submission = pd.DataFrame(values, columns=columns[1:])
        submission.insert(0, columns[0], first.submission[columns[0]].to_numpy())

    merged_folds = None if fold_ids == list(range(int(settings[0]["cv"]["n_folds"]))) else fold_ids
    with target.claimed("output_dir"):
        for part in parts:  # models and learning curves, for predict and the report
            for name in (files.MODELS, files.LOGS):
                if (part.path / name).is_dir():
                    shutil.copytree(part.path / name, target.path / name, dirs_exist_ok=True)
        config = first.run.read(files.CONFIG)
        config["cv"]["folds"] = merged_folds
        target.write_yaml(files.CONFIG, config)
        target.write_yaml(files.SETTINGS, {**settings[0], "cv": {**settings[0]["cv"], "folds": merged_folds}})
        write_combined(target, first.run, manifest.with_folds(fold_ids), fold_table, oof_frame, submission, scores)
    return scores, accepted


def merge(cfg: DictConfig) -> float:
    check_config(cfg, MergeConfig)
    # str(): a folder named 2024 comes from Hydra as a number
    output_dir = Path(str(cfg.output_dir)) if cfg.get("output_dir") else Path(str(cfg.paths.output_dir))
    runs = run_folders(cfg.runs)
    scores, accepted = merge_runs(runs, output_dir)
    print(
        f"merged {len(runs)} runs, folds {scores['folds']}: {score_line(scores)}\nOutputs: {output_dir}",
        flush=True,
    )
    end_untrusted_run(scores["untrusted"], output_dir, accepted, log)  # exit 3 as train, unless the parts accepted it
    return scores["oof_logloss"]


main = hydra_command("merge", merge)


if __name__ == "__main__":
    main()
