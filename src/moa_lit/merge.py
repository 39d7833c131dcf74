"""``python -m moa_lit.merge runs=[dir1,dir2,...]``: assemble runs that each
trained a subset of the folds (e.g. ``-m cv.folds=[0],[1],[2],[3],[4]`` with a
parallel Hydra launcher) into one run directory with the same outputs and
scores as a single run over all those folds."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from moa_lit import run_files, schema
from moa_lit.config import CONFIG_DIR
from moa_lit.errors import MoAError
from moa_lit.fs_errors import check_writable_folder
from moa_lit.settings_check import MERGE as MERGE_SETTINGS, check_settings
from moa_lit.run_tables import read_run_csv
from moa_lit.scores import score_run
from moa_lit.cli import run_and_exit_on_error

log = logging.getLogger("moa_lit.merge")

# Settings that may differ between the parts of one cross-validation.
PER_PART_KEYS = {"cv.folds", "paths", "hydra", "num_threads", "callbacks", "logger", "trainer.enable_progress_bar"}


def _flatten(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _comparable(cfg: DictConfig) -> dict:
    flat = _flatten(OmegaConf.to_container(cfg, resolve=False))
    return {k: v for k, v in flat.items() if not any(k == p or k.startswith(p + ".") for p in PER_PART_KEYS)}


def load_part(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MoAError(f"runs: {run_dir} is not a folder")
    for name in (run_files.CONFIG, run_files.FOLDS, run_files.OOF, run_files.SCORES):
        if not (run_dir / name).is_file():
            raise MoAError(f"runs: {run_dir} has no {name}; expected a finished training run")
    return {
        "dir": run_dir,
        "cfg": OmegaConf.load(run_dir / run_files.CONFIG),
        "folds": read_run_csv(run_dir / run_files.FOLDS),
        "oof": read_run_csv(run_dir / run_files.OOF),
        "scores": run_files.read_json(run_dir / run_files.SCORES),
        "submission": read_run_csv(run_dir / run_files.SUBMISSION) if (run_dir / run_files.SUBMISSION).is_file() else None,
    }


def check_compatible(parts: list[dict]) -> None:
    first = parts[0]
    ref = _comparable(first["cfg"])
    seen_folds: dict[int, Path] = {}
    for part in parts:
        if not part["folds"].equals(first["folds"]):
            raise MoAError(f"runs: {part['dir']} and {first['dir']} have different fold assignments (folds.csv); expected parts of one cross-validation")
        cfg = _comparable(part["cfg"])
        for key in sorted(set(ref) | set(cfg)):
            if ref.get(key) != cfg.get(key):
                raise MoAError(
                    f"runs: {part['dir']} has {key}={cfg.get(key)!r} but {first['dir']} has {ref.get(key)!r}; "
                    "expected runs that differ only in cv.folds"
                )
        for k in part["scores"]["folds"]:
            if k in seen_folds:
                raise MoAError(f"runs: fold {k} was trained in both {seen_folds[k]} and {part['dir']}; expected each fold in one run")
            seen_folds[k] = part["dir"]
        if (part["submission"] is None) != (first["submission"] is None):
            raise MoAError(f"runs: {part['dir']} and {first['dir']} differ in having a submission.csv")


def merge_runs(run_dirs: list[str | Path], output_dir: Path) -> dict:
    if not run_dirs:
        raise MoAError("runs=[]: expected the run folders to merge, e.g. runs=[outputs/a,outputs/b]")
    parts = [load_part(Path(d)) for d in run_dirs]
    check_compatible(parts)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cfg = parts[0]["cfg"]
    fold_ids = sorted(k for p in parts for k in p["scores"]["folds"])
    n_folds = int(cfg.cv.n_folds)

    # Targets come from the same data the parts were trained on (read through its cache).
    data = instantiate(cfg.data)
    ids = data.train[schema.ID].to_numpy()
    fold_table = parts[0]["folds"]
    if not np.array_equal(fold_table[schema.ID].to_numpy(), ids):
        raise MoAError(f"runs: the data of {parts[0]['dir']} no longer matches its folds.csv; expected the same training rows")
    folds = fold_table["fold"].to_numpy()
    names = data.scored_names
    position = pd.Series(np.arange(len(ids)), index=ids)
    oof = np.full((len(ids), len(names)), np.nan)
    for part in parts:
        frame = part["oof"]
        oof[position.loc[frame[schema.ID]].to_numpy()] = frame[names].to_numpy()
    targets = data.scored.to_numpy(dtype=np.float64)
    scores = score_run(targets, oof, folds, data.train_is_control, fold_ids, names)
    scores["seeds"] = parts[0]["scores"].get("seeds")
    scores["merged_from"] = [str(p["dir"]) for p in parts]
    scores["fold_summaries"] = [s for p in parts for s in p["scores"].get("fold_summaries", [])]
    scores["data"] = parts[0]["scores"].get("data")
    scores["timings_s"] = {"total": round(sum(p["scores"]["timings_s"]["total"] for p in parts), 3)}
    scores["wall_time_s"] = scores["timings_s"]["total"]

    rows = np.isin(folds, fold_ids)
    oof_frame = pd.DataFrame(oof[rows], columns=names)
    oof_frame.insert(0, schema.ID, ids[rows])
    run_files.write_csv(fold_table, output_dir / run_files.FOLDS)
    run_files.write_csv(oof_frame, output_dir / run_files.OOF, float_format="%.7g")
    if parts[0]["submission"] is not None:
        # Each part's test predictions average its own folds: weight by fold count.
        weights = [len(p["scores"]["folds"]) for p in parts]
        columns = parts[0]["submission"].columns
        values = sum(w * p["submission"][columns[1:]].to_numpy() for w, p in zip(weights, parts)) / sum(weights)
        submission = pd.DataFrame(values, columns=columns[1:])
        submission.insert(0, columns[0], parts[0]["submission"][columns[0]].to_numpy())
        run_files.write_csv(submission, output_dir / run_files.SUBMISSION, float_format="%.7g")
    for part in parts:
        models = part["dir"] / run_files.MODELS
        if models.is_dir():
            shutil.copytree(models, output_dir / run_files.MODELS, dirs_exist_ok=True)
    merged_cfg = OmegaConf.to_container(cfg, resolve=False)
    merged_cfg["cv"]["folds"] = None if fold_ids == list(range(n_folds)) else fold_ids
    (output_dir / ".hydra").mkdir(exist_ok=True)
    with run_files.atomic_path(output_dir / run_files.CONFIG) as tmp:
        OmegaConf.save(OmegaConf.create(merged_cfg), tmp)
    settings = parts[0]["dir"] / run_files.SETTINGS
    if settings.is_file():  # predict reads the run's resolved settings (e.g. predict.clip)
        resolved = OmegaConf.load(settings)
        resolved.cv.folds = merged_cfg["cv"]["folds"]
        with run_files.atomic_path(output_dir / run_files.SETTINGS) as tmp:
            OmegaConf.save(resolved, tmp)
    run_files.write_json(scores, output_dir / run_files.SCORES)
    return scores


def merge(cfg: DictConfig) -> float:
    check_settings(cfg, MERGE_SETTINGS)
    output_dir = Path(cfg.output_dir) if cfg.get("output_dir") else Path(cfg.paths.output_dir)
    check_writable_folder(output_dir, "output_dir")
    scores = merge_runs(list(cfg.runs or []), output_dir)
    print(
        f"merged {len(cfg.runs)} runs, folds {scores['folds']}: OOF log loss {scores['oof_logloss']:.5f} over all "
        f"{scores['n_rows']} rows (controls at 0), {scores['oof_logloss_treated']:.5f} over treated rows\nOutputs: {output_dir}",
        flush=True,
    )
    return scores["oof_logloss"]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="merge")
def main(cfg: DictConfig) -> float:
    return run_and_exit_on_error(merge, cfg)


if __name__ == "__main__":
    main()
