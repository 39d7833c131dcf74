"""``python -m moa_lit.train``: drug-aware cross-validated training of a MoA
model; writes the run's outputs into the Hydra run directory and returns the
OOF log loss (which the Optuna sweeper minimises)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from moa_lit import run_files, schema
from moa_lit.config import CONFIG_DIR, unknown_group_choice
from moa_lit.cv import cross_validate
from moa_lit.cli import configure_threads, run_and_exit_on_error
from moa_lit.devices import assign_job_gpu, check_trainer_devices, training_device
from moa_lit.errors import MoAError
from moa_lit.fold_predictions import check_probabilities
from moa_lit.data.reader import with_content_hashes
from moa_lit.folds import assign_folds
from moa_lit.fs_errors import check_writable_folder
from moa_lit.interrupts import say_how_to_continue
from moa_lit.resume import check_same_folds, prepare_run_dir
from moa_lit.scores import score_run
from moa_lit.search import failures_go_to_sweeper
from moa_lit.run_checks import untrusted_reasons, untrusted_run_error, warn_if_schedule_cannot_run
from moa_lit.settings_check import check_train_settings, command_line_overrides
from moa_lit.quiet import quiet_lightning
from moa_lit.report import build_report
from moa_lit.report.inputs import oof_labels_table
from moa_lit.run_manifest import write_manifest
from moa_lit.timing import PhaseTimer

log = logging.getLogger("moa_lit.train")


def multirun_job_number() -> int | None:
    """This job's number within a Hydra multirun (folds or trials), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return int(hydra_cfg.job.num) if hydra_cfg.mode == RunMode.MULTIRUN else None


def select_folds(folds_cfg, n_folds: int) -> list[int]:
    if folds_cfg is None:
        return list(range(n_folds))
    ids = [int(k) for k in (folds_cfg if isinstance(folds_cfg, (list, tuple)) or OmegaConf.is_list(folds_cfg) else [folds_cfg])]
    bad = [k for k in ids if not 0 <= k < n_folds]
    if bad or not ids or len(set(ids)) != len(ids):
        raise MoAError(f"cv.folds={ids}: expected distinct fold numbers in 0..{n_folds - 1}")
    return sorted(ids)


def train(cfg: DictConfig) -> float:
    timer = PhaseTimer()
    check_train_settings(cfg, command_line_overrides())
    quiet_lightning()
    assign_job_gpu(cfg, multirun_job_number())
    check_trainer_devices(cfg.trainer)
    device = training_device(cfg.trainer)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    threads = configure_threads(cfg.get("num_threads"))
    seeds = list(cfg.seeds)
    if not seeds:
        raise MoAError("seeds=[]: expected at least one seed")
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fold_ids = select_folds(cfg.cv.folds, cfg.cv.n_folds)
    resuming = prepare_run_dir(cfg, run_dir)

    with timer("data"):
        data = instantiate(cfg.data)
        fingerprint = with_content_hashes(data.fingerprint)
    names = data.scored_names
    targets = data.scored.to_numpy(dtype=np.float64)
    is_control = data.train_is_control
    log.info(
        "data: %d training rows (%d controls), %d scored targets, %s drugs, %s test rows; %d threads",
        len(targets), int(is_control.sum()), len(names),
        "no" if data.drug is None else data.drug.nunique(),
        0 if data.test is None else len(data.test), threads,
    )

    with timer("folds"):
        folds = assign_folds(
            targets,
            data.drug,
            n_folds=cfg.cv.n_folds,
            seed=cfg.cv.seed,
            drug_threshold=cfg.cv.drug_threshold,
        )
    warn_if_schedule_cannot_run(cfg, {k: int(((folds != k) & ~is_control).sum()) for k in fold_ids})
    with timer("writing"):
        fold_table = pd.DataFrame({schema.ID: data.train[schema.ID].to_numpy(), "fold": folds})
        if data.drug is not None:
            fold_table.insert(1, schema.DRUG, data.drug.to_numpy())
        if resuming:
            check_same_folds(run_dir, fold_table)
        run_files.write_csv(fold_table, run_dir / run_files.FOLDS)
        write_manifest(run_dir, data.layout, names, data.sample_submission_columns, seeds, fold_ids)

    preds = cross_validate(
        cfg,
        features=data.train,
        targets=targets,
        is_control=is_control,
        folds=folds,
        fold_ids=fold_ids,
        genes=list(data.layout.genes),
        cells=list(data.layout.cells),
        run_dir=run_dir,
        timer=timer,
        test_features=data.test,
        test_is_control=data.test_is_control if data.test is not None else None,
        nonscored=None if data.nonscored is None else data.nonscored.to_numpy(dtype=np.float32),
        drug=None if data.drug is None else data.drug.to_numpy(),
    )

    with timer("writing"):
        scores = score_run(targets, preds.oof, folds, is_control, fold_ids, names)
        rows = np.isin(folds, fold_ids)
        check_probabilities(preds.oof[rows], "out-of-fold predictions")
        if preds.test is not None:
            check_probabilities(preds.test, "test predictions")
        oof = pd.DataFrame(preds.oof[rows], columns=names)
        oof.insert(0, schema.ID, data.train[schema.ID].to_numpy()[rows])
        run_files.write_csv(oof, run_dir / run_files.OOF, float_format="%.7g")
        oof_labels = oof_labels_table(oof[schema.ID], data.train[schema.CP_TYPE].to_numpy()[rows], targets[rows], names)
        run_files.write_csv(oof_labels, run_dir / run_files.OOF_LABELS)
        if preds.test is not None:
            submission = pd.DataFrame(preds.test, columns=names)
            submission.insert(0, schema.ID, data.test[schema.ID].to_numpy())
            if data.sample_submission_columns is not None:
                submission = submission[data.sample_submission_columns]
            if data.sample_submission_ids is not None:  # the sample's row order (same ids, checked)
                submission = submission.set_index(schema.ID).loc[data.sample_submission_ids.to_numpy()].reset_index()
            run_files.write_csv(submission, run_dir / run_files.SUBMISSION, float_format="%.7g")
    scores["seeds"] = seeds
    scores["fold_summaries"] = preds.fold_summaries
    gpu_peaks = [f["peak_gpu_memory_mb"] for f in preds.fold_summaries if f.get("peak_gpu_memory_mb") is not None]
    scores["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    scores["peak_gpu_memory_mb"] = max(gpu_peaks) if gpu_peaks else None
    scores["data"] = fingerprint
    scores["timings_s"] = timer.summary()
    scores["wall_time_s"] = scores["timings_s"]["total"]
    untrusted = untrusted_reasons(cfg, scores, run_dir, seeds, fold_ids)
    scores["untrusted"] = untrusted  # [] for a run whose result may be used
    run_files.write_json(scores, run_dir / run_files.SCORES)
    build_report(run_dir)

    source = "built-in synthetic data" if "synthetic" in str(cfg.data.get("_target_", "")) else "data"
    print(
        f"OOF log loss {scores['oof_logloss']:.5f} over all {scores['n_rows']} rows "
        f"(controls at 0), {scores['oof_logloss_treated']:.5f} over {scores['n_treated_rows']} treated rows; "
        f"prior {scores['prior_logloss']:.5f} / {scores['prior_logloss_treated']:.5f} ({source}); "
        f"{scores['wall_time_s']:.0f} s\nOutputs: {run_dir}",
        flush=True,
    )
    if untrusted and not cfg.get("allow_worse_than_prior", False):
        error = untrusted_run_error(untrusted, run_dir)
        if not failures_go_to_sweeper():
            raise error
        log.warning("%s", error)  # a search trial: the sweeper records its value, the log says why it is poor
    return scores["oof_logloss"]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    if failures_go_to_sweeper():
        # An Optuna trial: the sweeper records a failure and goes on.
        return train(cfg)
    with say_how_to_continue("moa_lit.train", sys.argv[1:], Path(cfg.paths.output_dir)):
        return run_and_exit_on_error(train, cfg)


def output_folder_arg(argv: list[str]) -> tuple[str, str]:
    """(key, folder) where this command line will write, as given (Hydra makes
    it before any of our code runs, so it is checked first)."""
    multirun = "-m" in argv or "--multirun" in argv
    wanted = ("hydra.sweep.dir",) if multirun else ("hydra.run.dir",)
    for key in (*wanted, "paths.log_dir"):
        values = [a.split("=", 1)[1] for a in argv if a.split("=", 1)[0].lstrip("+") == key and "=" in a]
        if values and not any(ch in values[-1] for ch in "${}"):
            return key, values[-1]
    return "paths.log_dir", "outputs"


def main():
    args = sys.argv[1:]
    bad_choice = unknown_group_choice(args)
    try:
        if bad_choice:
            raise MoAError(bad_choice)
        check_writable_folder(*reversed(output_folder_arg(args)))
    except MoAError as err:
        print(f"moa-lit: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    return hydra_main()


if __name__ == "__main__":
    main()
