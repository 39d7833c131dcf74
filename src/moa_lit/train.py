"""``python -m moa_lit.train``: drug-aware cross-validated training of a MoA
model; writes the run's outputs into the Hydra run directory and returns the
score named by ``optimized_metric`` (which the Optuna sweeper minimises).

The entry point builds every object from the config (Hydra ``instantiate``,
``_partial_`` where arguments come late, the typed groups of
:mod:`moa_lit.settings`); nothing below it reads the config."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from moa_lit import schema
from moa_lit.cli import busy_machine_line, configure_threads, hydra_command, library_error
from moa_lit.devices import assign_job_gpu, check_trainer_devices, resolved_precision, training_device
from moa_lit.errors import MoAError
from moa_lit.fs_errors import check_writable_folder
from moa_lit.interrupts import say_how_to_continue
from moa_lit.quiet import quiet_lightning
from moa_lit.report import build_report
from moa_lit.run_checks import end_untrusted_run, untrusted_reasons, warn_if_schedule_cannot_run
from moa_lit.runs import files
from moa_lit.runs.manifest import RunManifest
from moa_lit.runs.run_dir import RunDir, check_apart_from_data, labels_table
from moa_lit.scoring.scores import choosing_rows, headline_scores, new_drug_rows, optimized_score, score_line, score_run
from moa_lit.settings import TrainConfig, check_config, check_ignored_rate, command_line_overrides, typed
from moa_lit.timing import PhaseTimer
from moa_lit.training.calibration import nested_calibration
from moa_lit.training.cv import CrossValidation, FoldTrainers, TestRows
from moa_lit.training.datamodule import MoADataModule
from moa_lit.training.final_model import final_average, output_frame
from moa_lit.training.folds import assign_folds
from moa_lit.training.refit import check_refit_possible, refit_epochs, refit_final_models
from moa_lit.training.stages import FoldPlan

log = logging.getLogger("moa_lit.train")


def multirun_job_number() -> int | None:
    """This job's number within a Hydra multirun (folds or trials), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return int(hydra_cfg.job.num) if hydra_cfg.mode == RunMode.MULTIRUN else None


def new_trainer(cfg: DictConfig, **kwargs):
    """The configured Lightning Trainer (``_partial_=True``: its factory), ``precision=auto`` resolved."""
    return instantiate(cfg.trainer, precision=resolved_precision(cfg.trainer), **kwargs)


def fold_plan(cfg: DictConfig) -> FoldPlan:
    """How each fold is trained: the model and trainer factories and the stages' settings."""
    cv = typed(cfg, "cv")
    return FoldPlan(
        new_model=instantiate(cfg.model, _partial_=True, _recursive_=False),
        new_trainer=new_trainer(cfg, _partial_=True),
        pretrain=typed(cfg, "pretrain"),
        stack=typed(cfg, "stack"),
        cv_seed=cv.seed,
        drug_threshold=cv.drug_threshold,
    )


def fold_trainers(cfg: DictConfig) -> FoldTrainers:
    callbacks = {
        name: instantiate(node, _partial_=True) for name, node in (cfg.get("callbacks") or {}).items() if node is not None
    }
    return FoldTrainers(
        new_trainer=new_trainer(cfg, _partial_=True),
        callbacks=callbacks,
        new_logger=instantiate(cfg.logger, _partial_=True) if cfg.get("logger") else None,
    )


def check_library_settings(cfg: DictConfig) -> None:
    """The libraries' own checks of their arguments, before any work: each
    object is built once; a refusal is one line naming the setting."""
    try:
        new_trainer(cfg, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        optimizer = instantiate(cfg.model.optimizer, params=[torch.nn.Parameter(torch.zeros(1))])
        if cfg.model.get("scheduler"):
            instantiate(cfg.model.scheduler, optimizer=optimizer, total_steps=100)
        if cfg.get("logger"):  # writes nothing yet
            instantiate(cfg.logger, save_dir=str(cfg.paths.output_dir), name="", version="check")
        for node in (cfg.get("callbacks") or {}).values():
            if node is not None:
                instantiate(node)
    except Exception as exc:
        err = library_error(exc, cfg)
        if err is None:
            raise
        raise err from exc


def check_settings(cfg: DictConfig, overrides: list[str]) -> None:
    """Every setting and the combinations that cannot run or would be silently
    ignored; before Hydra makes the run folder and again when train starts."""
    from moa_lit.ensemble import refuse_model_overrides

    check_config(cfg, TrainConfig)
    if "hydra" in cfg:  # on the command line: the folder Hydra is about to make
        key = "hydra.sweep.dir" if str(cfg.hydra.mode).endswith("MULTIRUN") else "hydra.run.dir"
        folder = str(OmegaConf.select(cfg, key))
        check_writable_folder(folder, key)
        if key == "hydra.run.dir":
            check_apart_from_data(folder, None if cfg.data.get("dir") is None else str(cfg.data.dir), key)
            existing = RunDir(folder)
            if existing.path.is_dir():  # under its lock: a run being written is named by its writer
                with existing.lock():
                    existing.check_may_write(key, bool(cfg.resume))  # again when train claims it
    if cfg.calibration.method != "none" and cfg.cv.folds is not None:
        raise MoAError(
            f"calibration.method={cfg.calibration.method} with cv.folds set: each fold's OOF rows are calibrated on "
            "the other folds' and merge joins uncalibrated parts; run every fold (cv.folds=null), or calibration.method=none"
        )
    if cfg.ensemble.get("models") is not None:
        refuse_model_overrides(overrides)
        return
    check_ignored_rate(cfg, overrides)
    check_refit_possible(str(cfg.final_model), bool(cfg.pretrain.enabled), bool(cfg.stack.enabled), cfg.cv.folds is not None)


def train(cfg: DictConfig) -> float:
    overrides = command_line_overrides()
    check_settings(cfg, overrides)
    if cfg.ensemble.get("models") is not None:
        from moa_lit.ensemble import train_ensemble

        return train_ensemble(cfg, train, overrides)
    timer = PhaseTimer()
    cv = typed(cfg, "cv")
    final_model = str(cfg.final_model)
    quiet_lightning()
    assign_job_gpu(cfg, multirun_job_number())
    check_trainer_devices(cfg.trainer)
    check_library_settings(cfg)
    device = training_device(cfg.trainer)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # null: the cores given divided by the jobs of a parallel multirun or search.
    threads = configure_threads(cfg.get("num_threads"))
    metric = cfg.optimized_metric
    seeds = [int(s) for s in cfg.seeds]
    loader = typed(cfg, "loader")
    features = typed(cfg, "features")
    clip = typed(cfg, "predict").clip_range
    calibration = typed(cfg, "calibration")
    plan, trainers = fold_plan(cfg), fold_trainers(cfg)
    fold_ids = cv.fold_ids
    refit = typed(cfg, "refit")
    run = RunDir(str(cfg.paths.output_dir))  # a folder named 2024 comes as a number
    check_apart_from_data(run.path, None if cfg.data.get("dir") is None else str(cfg.data.dir), output_key())
    resume = bool(cfg.get("resume", False))
    # A new or empty folder, or (resume=true) this moa-lit's run; locked while written.
    with run.claimed(output_key(), resume) as resuming:
        run.start(OmegaConf.to_container(cfg, resolve=True), resuming)
        if resuming:
            run.check_resume_keeps_outputs(seeds, fold_ids)
        busy = busy_machine_line(threads)  # logged once the run owns its folder (its log file is there)
        if busy:
            log.warning("%s", busy)

        with timer("data"):
            data = instantiate(cfg.data)
            fingerprint = data.fingerprint
        names = data.scored_names
        targets = data.scored.to_numpy(dtype=np.float64)
        is_control = data.train_is_control
        log.info(
            "data: %d training rows (%d controls), %d scored targets, %s drugs, %s test rows; %d threads, precision %s",
            len(targets), int(is_control.sum()), len(names),
            "no" if data.drug is None else data.drug.nunique(),
            0 if data.test is None else len(data.test), threads, resolved_precision(cfg.trainer),
        )

        with timer("folds"):
            folds = assign_folds(targets, data.drug, n_folds=cv.n_folds, seed=cv.seed, drug_threshold=cv.drug_threshold)
        new_drugs = new_drug_rows(data.drug, is_control, cv.drug_threshold)  # scores and best epochs
        run.record_data(fingerprint, resuming)
        # Settings the data cannot satisfy (a fold's rows and columns): one line before any training.
        train_rows = {k: int(((folds != k) & ~is_control).sum()) for k in fold_ids}
        features.check_against_data(min(train_rows.values()), len(data.layout.genes), len(data.layout.cells))
        warn_if_schedule_cannot_run(cfg, train_rows)
        ids = data.train[schema.ID].to_numpy()
        with timer("writing"):
            fold_table = pd.DataFrame({schema.ID: ids, "fold": folds})
            if data.drug is not None:
                fold_table.insert(1, schema.DRUG, data.drug.to_numpy())
            if resuming:
                run.check_same_folds(fold_table)
            run.write_folds(fold_table)
            run.write_labels(labels_table(ids, data.train[schema.CP_TYPE].to_numpy(), targets, names))
            manifest = RunManifest.new(
                data.layout, names, seeds, fold_ids, clip=clip,
                final_model=final_model, refit_seeds=refit.seeds,
            )
            run.write_manifest(manifest)
            # Hydra's own copy is off (conf/hydra/default.yaml): written once the folder is this run's.
            run.write_hydra_record(cfg)

        dm = MoADataModule(
            data.train, targets, folds, is_control, list(data.layout.genes), list(data.layout.cells),
            feature_params=asdict(features), batch_size=loader.batch_size, eval_batch_size=loader.eval_batch_size,
            device=device, new_drugs=new_drugs, control_augmentation=loader.control_augmentation,
        )
        cross_validation = CrossValidation(
            dm, run, plan, trainers, timer,
            test=None if data.test is None else TestRows(data.test, data.test_is_control),
            nonscored=None if data.nonscored is None else data.nonscored.to_numpy(dtype=np.float32),
            drug=None if data.drug is None else data.drug.to_numpy(),
            resume=resume,
        )
        preds = cross_validation.run_folds(seeds, fold_ids, clip)
        test_pred, refitted = preds.test, None
        if final_model != "fold_average":
            with timer("refit"):
                epochs = refit_epochs([f["best_epoch"] for f in preds.fold_summaries], refit.epoch_scale)
                refitted = refit_final_models(
                    plan, dm, run, refit.seeds, epochs, test_features=data.test, test_is_control=data.test_is_control,
                    clip=clip, resume=resume,
                )
            if test_pred is not None:
                test_pred = final_average(final_model, preds.test, refitted.test)

        oof_pred, uncalibrated = preds.oof, {}
        if calibration.method != "none":
            with timer("calibration"):
                oof_pred, fitted = nested_calibration(
                    preds.oof, targets, folds, fold_ids, choosing_rows(new_drugs, is_control), data.drug,
                    calibration.method, calibration.strength, clip, is_control,
                )
            if test_pred is not None:
                test_pred = fitted.apply(test_pred, clip, data.test_is_control)
            run.write_json(files.CALIBRATION, fitted.to_json())
            uncalibrated = score_run(targets, preds.oof, folds, is_control, fold_ids, names, new_drugs, cv.drug_threshold)

        with timer("writing"):
            scores = score_run(targets, oof_pred, folds, is_control, fold_ids, names, new_drugs, cv.drug_threshold)
            scores.update({f"{k}_uncalibrated": v for k, v in headline_scores(uncalibrated).items()})
            if uncalibrated:
                log.info("calibration.method=%s, before calibration: %s", calibration.method, score_line(uncalibrated))
            rows = np.isin(folds, fold_ids)
            oof = pd.DataFrame(oof_pred[rows], columns=names)
            oof.insert(0, schema.ID, ids[rows])
            submission = None
            if test_pred is not None:
                submission = output_frame(manifest, data.test[schema.ID], test_pred)
                if data.sample_submission_ids is not None:  # the sample's row order (same ids, checked)
                    submission = submission.set_index(schema.ID).loc[data.sample_submission_ids.to_numpy()].reset_index()
            run.write_predictions(oof, submission)
        scores["seeds"] = seeds
        scores["fold_summaries"] = preds.fold_summaries
        scores["final_model"] = {"kind": final_model, **({"refit": refitted.summary} if refitted else {})}
        gpu_peaks = [f["peak_gpu_memory_mb"] for f in preds.fold_summaries if f.get("peak_gpu_memory_mb") is not None]
        scores["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        scores["peak_gpu_memory_mb"] = max(gpu_peaks) if gpu_peaks else None
        scores["data"] = fingerprint
        scores["timings_s"] = timer.summary()
        scores["wall_time_s"] = scores["timings_s"]["total"]
        untrusted = untrusted_reasons(cfg, scores, run.path, seeds, fold_ids)
        scores["untrusted"] = untrusted  # [] for a run whose result may be used
        run.write_scores(scores)
        build_report(run.path)

        source = "built-in synthetic data" if "synthetic" in str(cfg.data.get("_target_", "")) else "data"
        print(
            f"{score_line(scores, prior=True)} ({source}); "
            f"{scores['wall_time_s']:.0f} s\nOutputs: {run.path}",
            flush=True,
        )
        end_untrusted_run(untrusted, run.path, bool(cfg.get("allow_worse_than_prior", False)), log)
        return optimized_score(scores, metric)


def output_key() -> str:
    """The setting that chose the run folder, as the user wrote it."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or not any(o.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for o in HydraConfig.get().overrides.hydra):
        return "paths.output_dir"
    return "hydra.sweep.dir" if multirun_job_number() is not None else "hydra.run.dir"


# Ctrl-C / SIGTERM: one line with the command that resumes the run.
main = hydra_command(
    "train", train, around=lambda cfg: say_how_to_continue("moa_lit.train", sys.argv[1:], Path(cfg.paths.output_dir)),
    check=check_settings,
)


if __name__ == "__main__":
    main()
