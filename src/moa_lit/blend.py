"""``python -m moa_lit.blend runs=[dir1,dir2,...] [output_dir=...]``: the
weighted average of several runs' predictions whose non-negative weights,
summing to one, minimise the out-of-fold log loss.

The weights are fitted on the OOF predictions of the rows the runs share, so
the runs must have the same rows and the same folds (otherwise an OOF row of
one run may have been a training row of another's fold model); mismatched runs
are refused. Writes ``oof.csv``, ``scores.json`` (the blended OOF log loss over
all rows and treated rows, as ``train`` reports it), ``weights.json`` and, when
every run has one, the blended ``submission.csv``.

The weights are fitted on the same OOF rows they are scored on, so the blended
score is slightly optimistic (a handful of weights fitted on ~20k rows).
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy.optimize import minimize

from moa_lit import run_files, schema
from moa_lit.errors import MoAError
from moa_lit.run_tables import read_run_csv
from moa_lit.cli import one_line, user_error
from moa_lit.metric import mean_logloss
from moa_lit.scores import score_run

log = logging.getLogger("moa_lit.blend")


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise MoAError(f"{path}: {what} not found; expected a finished run directory of python -m moa_lit.train")
    return read_run_csv(path)


def load_runs(run_dirs: list[Path]) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The shared folds table and each run's OOF frame; refuses runs whose OOF
    rows or fold assignment differ from the first run's."""
    first = run_dirs[0]
    folds = _read_csv(first / run_files.FOLDS, run_files.FOLDS)
    oofs = [_read_csv(first / run_files.OOF, run_files.OOF)]
    for run in run_dirs[1:]:
        other_folds = _read_csv(run / run_files.FOLDS, run_files.FOLDS)
        if not other_folds.equals(folds):
            raise MoAError(f"runs {first} and {run} have different folds ({run_files.FOLDS} differ); blend runs of the same data and cv settings")
        oof = _read_csv(run / run_files.OOF, run_files.OOF)
        if not oof[schema.ID].equals(oofs[0][schema.ID]):
            raise MoAError(
                f"runs {first} and {run} predicted different OOF rows ({len(oofs[0])} vs {len(oof)} rows in "
                f"{run_files.OOF}; were different cv.folds run?); blend runs over the same rows"
            )
        if list(oof.columns) != list(oofs[0].columns):
            raise MoAError(f"runs {first} and {run} predict different target columns in {run_files.OOF}")
        oofs.append(oof)
    return folds, oofs


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


def _run_data(run_dir: Path):
    """The training labels a run was scored on, from its saved config."""
    cfg_path = run_dir / run_files.CONFIG
    if not cfg_path.is_file():
        raise MoAError(f"{cfg_path}: the run's saved config is missing; expected a run directory of python -m moa_lit.train")
    cfg = OmegaConf.load(cfg_path)
    return instantiate(cfg.data)


def blend(run_dirs: list[Path], output_dir: Path) -> dict:
    if len(run_dirs) < 2:
        raise MoAError(f"runs={[str(r) for r in run_dirs]}: expected at least two run directories, e.g. runs=[dir1,dir2]")
    folds, oofs = load_runs(run_dirs)
    names = list(oofs[0].columns[1:])
    data = _run_data(run_dirs[0])
    truth_frame = data.scored.copy()
    truth_frame.index = data.train[schema.ID].to_numpy()
    if list(data.train[schema.ID]) != list(folds[schema.ID]):
        raise MoAError(
            f"{run_dirs[0] / run_files.FOLDS} does not match the rows of the data in its saved config; "
            "run the blend from the folder the runs were trained in"
        )
    all_truth = truth_frame[names].to_numpy(dtype=np.float64)
    rows = folds[schema.ID].isin(oofs[0][schema.ID]).to_numpy()
    predictions = [oof[names].to_numpy(dtype=np.float64) for oof in oofs]
    weights = optimise_weights(all_truth[rows], predictions)

    blended = np.tensordot(weights, np.stack(predictions), axes=1)
    full = np.full(all_truth.shape, np.nan)
    full[rows] = blended
    fold_ids = sorted(int(k) for k in folds.loc[rows, "fold"].unique())
    fold_of_row = folds["fold"].to_numpy()
    is_control = data.train_is_control
    scores = score_run(all_truth, full, fold_of_row, is_control, fold_ids, names)
    singles = {}
    for run, pred in zip(run_dirs, predictions):
        single = np.full(all_truth.shape, np.nan)
        single[rows] = pred
        s = score_run(all_truth, single, fold_of_row, is_control, fold_ids, names)
        singles[str(run)] = {"oof_logloss": s["oof_logloss"], "oof_logloss_treated": s["oof_logloss_treated"]}
    scores["runs"] = singles

    output_dir.mkdir(parents=True, exist_ok=True)
    oof = pd.DataFrame(blended, columns=names)
    oof.insert(0, schema.ID, oofs[0][schema.ID].to_numpy())
    run_files.write_csv(oof, output_dir / run_files.OOF, float_format="%.7g")
    run_files.write_json({str(r): float(w) for r, w in zip(run_dirs, weights)}, output_dir / WEIGHTS)
    run_files.write_json(scores, output_dir / run_files.SCORES)
    run_files.write_csv(folds, output_dir / run_files.FOLDS)
    submissions = [run / run_files.SUBMISSION for run in run_dirs]
    if all(p.is_file() for p in submissions):
        frames = [read_run_csv(p) for p in submissions]
        for p, frame in zip(submissions[1:], frames[1:]):
            if not (frame[schema.ID].equals(frames[0][schema.ID]) and list(frame.columns) == list(frames[0].columns)):
                raise MoAError(f"{submissions[0]} and {p} have different rows or columns; blend runs of the same test data")
        cols = list(frames[0].columns[1:])
        values = np.tensordot(weights, np.stack([f[cols].to_numpy(dtype=np.float64) for f in frames]), axes=1)
        submission = pd.DataFrame(values, columns=cols)
        submission.insert(0, schema.ID, frames[0][schema.ID].to_numpy())
        run_files.write_csv(submission, output_dir / run_files.SUBMISSION, float_format="%.7g")
    else:
        log.info("not every run has a %s: no blended submission written", run_files.SUBMISSION)
    return {"weights": weights, "scores": scores}


WEIGHTS = "weights.json"


def _parse(argv: list[str]) -> tuple[list[Path], Path]:
    try:
        cli = OmegaConf.from_dotlist(argv)
    except Exception as err:  # omegaconf's grammar errors are multi-line
        raise MoAError(f"could not read the arguments {argv}: expected runs=[dir1,dir2] [output_dir=DIR] ({type(err).__name__})") from None
    unknown = set(cli.keys()) - {"runs", "output_dir"}
    if unknown:
        raise MoAError(f"unknown argument(s) {sorted(unknown)}: expected runs=[dir1,dir2] [output_dir=DIR]")
    runs = cli.get("runs")
    if runs is None:
        raise MoAError("runs= is missing: expected runs=[dir1,dir2,...], the run directories to blend")
    runs = list(runs) if OmegaConf.is_list(runs) else [runs]
    output_dir = cli.get("output_dir") or f"outputs/blend/{datetime.now():%Y-%m-%d_%H-%M-%S}"
    return [Path(str(r)).expanduser() for r in runs], Path(str(output_dir)).expanduser()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        run_dirs, output_dir = _parse(sys.argv[1:] if argv is None else argv)
        result = blend(run_dirs, output_dir)
    except Exception as exc:  # bad runs or settings, or a file-system fault: one line
        err = user_error(exc)
        if err is None:
            raise
        print(f"moa-lit: error: {one_line(str(err))}", file=sys.stderr, flush=True)
        sys.exit(2)
    scores = result["scores"]
    for run, w in zip(run_dirs, result["weights"]):
        single = scores["runs"][str(run)]
        print(f"weight {w:.4f}  {run}  (OOF {single['oof_logloss']:.5f} all rows, {single['oof_logloss_treated']:.5f} treated)")
    print(
        f"Blended OOF log loss {scores['oof_logloss']:.5f} over all {scores['n_rows']} rows (controls at 0), "
        f"{scores['oof_logloss_treated']:.5f} over {scores['n_treated_rows']} treated rows\nOutputs: {output_dir}",
        flush=True,
    )


if __name__ == "__main__":
    main()
