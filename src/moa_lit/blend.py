"""``python -m moa_lit.blend runs=[dir1,dir2,...] [output_dir=...]``: the
weighted average of runs of the same rows, folds and data (docs/runs.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from scipy.optimize import minimize

from moa_lit import schema
from moa_lit.cli import hydra_command
from moa_lit.errors import MoAError
from moa_lit.runs import files
from moa_lit.run_checks import end_untrusted_run
from moa_lit.runs.combine import (
    FinishedRun, carried_untrusted, check_same_data, labels_in_fold_order, new_drugs_of, output_run, read_finished,
    run_folders, score_oof, weighted_average, write_combined,
)
from moa_lit.runs.manifest import BlendMember
from moa_lit.scoring.metric import mean_logloss
from moa_lit.scoring.scores import brief_scores, choosing_rows, headline_scores, score_line
from moa_lit.settings import BlendConfig, check_config

log = logging.getLogger("moa_lit.blend")

WEIGHTS = "weights.json"


def load_runs(run_dirs: list[Path]) -> list[FinishedRun]:
    """The finished runs; refuses runs whose data, fold assignment, OOF rows,
    feature columns or targets differ from the first run's."""
    runs = [read_finished(run_dir) for run_dir in run_dirs]
    check_same_data(runs)
    first = runs[0]
    for other in runs[1:]:
        if not other.folds.equals(first.folds):
            raise MoAError(f"runs {first.path} and {other.path} have different folds ({files.FOLDS} differ); blend runs of the same data and cv settings")
        if not other.oof[schema.ID].equals(first.oof[schema.ID]):
            raise MoAError(
                f"runs {first.path} and {other.path} predicted different OOF rows ({len(first.oof)} vs {len(other.oof)} rows in "
                f"{files.OOF}; were different cv.folds run?); blend runs over the same rows"
            )
        if list(other.oof.columns) != list(first.oof.columns):
            raise MoAError(f"runs {first.path} and {other.path} predict different target columns in {files.OOF}")
    manifests = [r.run.manifest() for r in runs]
    for r, m in zip(runs[1:], manifests[1:]):
        if m.layout != manifests[0].layout or m.target_names != manifests[0].target_names:
            raise MoAError(f"runs {first.path} and {r.path} were trained on other feature columns or targets (run.json); blend runs of the same data")
    return runs


def optimise_weights(truth: np.ndarray, predictions: list[np.ndarray]) -> np.ndarray:
    """Non-negative weights summing to 1 minimising the mean log loss of the
    weighted average (SLSQP). Never worse than the best single run: that run's
    one-hot weights are a feasible point, kept if the optimiser ends above it."""
    k = len(predictions)
    stacked = np.stack(predictions)

    def loss(w: np.ndarray) -> float:
        return mean_logloss(truth, np.tensordot(w, stacked, axes=1))

    singles = np.array([loss(np.eye(k)[i]) for i in range(k)])
    result = minimize(
        loss,
        np.full(k, 1.0 / k),
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        options={"ftol": 1e-10, "maxiter": 200},
    )
    w = np.clip(result.x, 0.0, None)
    w = w / w.sum()
    if loss(w) > singles.min():
        w = np.eye(k)[int(singles.argmin())]
    return w


def nested_weights(
    truth: np.ndarray, predictions: list[np.ndarray], fold_of_row: np.ndarray, fold_ids: list[int], choosing: np.ndarray | None = None
) -> dict[int, np.ndarray]:
    """For each fold k, the weights of :func:`optimise_weights` fitted on the
    other folds' rows only (of them, the ``choosing`` rows: the new-drug rows),
    so the rows of fold k never choose the weights they are blended with (what
    ``experiment=ensemble`` reports as its OOF)."""
    choosing = np.ones(len(fold_of_row), dtype=bool) if choosing is None else choosing
    weights = {}
    for k in fold_ids:
        fit = np.isin(fold_of_row, fold_ids) & (fold_of_row != k) & choosing
        weights[int(k)] = optimise_weights(truth[fit], [p[fit] for p in predictions])
    return weights


def nested_blend(predictions: list[np.ndarray], fold_of_row: np.ndarray, weights: dict[int, np.ndarray]) -> np.ndarray:
    """Each fold's rows blended with that fold's weights (:func:`nested_weights`)."""
    stacked = np.stack(predictions)
    out = np.full(stacked.shape[1:], np.nan)
    for k, w in weights.items():
        rows = fold_of_row == k
        out[rows] = np.tensordot(w, stacked[:, rows], axes=1)
    return out


@dataclass
class Blend:
    runs: list[FinishedRun]
    weights: np.ndarray  # fitted on every OOF row (the submission's and predict's)
    per_fold: dict[int, np.ndarray] | None  # nested: fold k's rows blended with weights fitted on the other folds
    oof: pd.DataFrame
    scores: dict
    singles: list[dict]  # each run's headline scores
    submission: pd.DataFrame | None  # None unless every run has one


def blend_runs(run_dirs: list[Path], nested: bool = False) -> Blend:
    """The runs' weights, fitted on the new-drug rows (else the treated rows), and the blended predictions."""
    runs = load_runs(run_dirs)
    first = runs[0]
    names = list(first.oof.columns[1:])
    labels = labels_in_fold_order(first.run, first.folds, names)
    rows = labels.rows_of(first.oof[schema.ID], first.path / files.OOF)
    truth = labels.targets[rows]
    predictions = [r.oof[names].to_numpy(dtype=np.float64) for r in runs]
    new_drugs = new_drugs_of(first, labels)
    fit = choosing_rows(new_drugs[0], labels.is_control)[rows]
    weights = optimise_weights(truth[fit], [p[fit] for p in predictions])
    paths, per_fold = [r.path for r in runs], None
    if nested:
        fold_of_row = first.folds["fold"].to_numpy()[rows]
        per_fold = nested_weights(truth, predictions, fold_of_row, sorted(int(k) for k in np.unique(fold_of_row)), fit)
        oof = pd.DataFrame(nested_blend(predictions, fold_of_row, per_fold), columns=names)
        oof.insert(0, schema.ID, first.oof[schema.ID].to_numpy())
    else:
        oof = weighted_average([r.oof for r in runs], weights, files.OOF, paths)
    submission = None
    if all(r.submission is not None for r in runs):
        submission = weighted_average([r.submission for r in runs], weights, files.SUBMISSION, paths)
    scores = score_oof(labels, first.folds, oof, names, *new_drugs)
    singles = [headline_scores(score_oof(labels, first.folds, r.oof, names, *new_drugs)) for r in runs]
    return Blend(runs, weights, per_fold, oof, scores, singles, submission)


def blend(run_dirs: list[Path], output_dir: Path) -> dict:
    if len(run_dirs) < 2:
        raise MoAError(f"runs={[str(r) for r in run_dirs]}: expected at least two run directories, e.g. runs=[dir1,dir2]")
    target = output_run(output_dir, run_dirs)
    blended = blend_runs(run_dirs)
    first, scores, weights = blended.runs[0], blended.scores, blended.weights
    scores["runs"] = {str(r.path): s for r, s in zip(blended.runs, blended.singles)}
    scores["data"] = first.run.read(files.DATA_FINGERPRINT, None)
    scores["untrusted"], accepted = carried_untrusted(blended.runs)
    if blended.submission is None:
        log.info("not every run has a %s: no blended submission written", files.SUBMISSION)
    members = [BlendMember(str(r.path.resolve()), float(w)) for r, w in zip(blended.runs, weights)]
    manifest = replace(first.run.manifest().with_folds(scores["folds"]), seeds=[], clip=None, members=members)
    with target.claimed("output_dir"):
        target.write_json(WEIGHTS, {str(r): float(w) for r, w in zip(run_dirs, weights)})
        write_combined(target, first.run, manifest, first.folds, blended.oof, blended.submission, scores)
    return {"weights": weights, "scores": scores, "accepted": accepted}


def run(cfg: DictConfig) -> dict:
    check_config(cfg, BlendConfig)
    if cfg.runs is None:
        raise MoAError("runs= is missing: expected runs=[dir1,dir2,...], the run directories to blend")
    run_dirs = run_folders(cfg.runs)
    output_dir = Path(str(cfg.output_dir)).expanduser()  # str(): a folder named 2024 comes as a number
    result = blend(run_dirs, output_dir)
    scores = result["scores"]
    for run_dir, w in zip(run_dirs, result["weights"]):
        single = scores["runs"][str(run_dir)]
        print(f"weight {w:.4f}  {run_dir}  ({brief_scores(single)})")
    print(
        f"Blended {score_line(scores)}\nOutputs: {output_dir}",
        flush=True,
    )
    end_untrusted_run(scores["untrusted"], output_dir, result["accepted"], log)  # exit 3 as train, unless the runs accepted it
    return result


main = hydra_command("blend", run)


if __name__ == "__main__":
    main()
