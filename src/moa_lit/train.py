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
from moa_lit.cli import busy_machine_line, configure_threads, hydra_command, parallel_jobs, this_jobs_hydra_config
from moa_lit.config import compose_error, unknown_group_choice
from moa_lit.data.reader import with_content_hashes
from moa_lit.devices import assign_job_gpu, check_trainer_devices, training_device
from moa_lit.errors import MoAError
from moa_lit.fs_errors import check_writable_folder
from moa_lit.interrupts import say_how_to_continue
from moa_lit.quiet import quiet_lightning
from moa_lit.report import build_report
from moa_lit.runs.manifest import RunManifest
from moa_lit.run_checks import end_untrusted_run, untrusted_reasons, warn_if_schedule_cannot_run
from moa_lit.runs.run_dir import RunDir, check_apart_from_data, labels_table
from moa_lit.scoring.scores import NEW_DRUGS, new_drug_rows, optimized_score, score_line, score_run
from moa_lit.settings import (
    CVSettings,
    EnsembleSettings,
    FeatureSettings,
    LoaderSettings,
    PredictSettings,
    PretrainSettings,
    RefitSettings,
    StackSettings,
    check_optimized_metric,
    typed,
)
from moa_lit.settings_check import check_train_settings, command_line_overrides
from moa_lit.timing import PhaseTimer
from moa_lit.training.cv import CrossValidation, FoldTrainers, TestRows
from moa_lit.training.datamodule import MoADataModule
from moa_lit.training.final_model import final_average, output_frame
from moa_lit.training.folds import assign_folds
from moa_lit.training.refit import check_refit_possible, refit_epochs, refit_final_models
from moa_lit.training.stages import FoldPlan, peak_lr_setting

log = logging.getLogger("moa_lit.train")


def multirun_job_number() -> int | None:
    """This job's number within a Hydra multirun (folds or trials), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return int(hydra_cfg.job.num) if hydra_cfg.mode == RunMode.MULTIRUN else None


def fold_plan(cfg: DictConfig) -> FoldPlan:
    """How each fold is trained: the model and trainer factories and the stages' settings."""
    cv = typed(cfg.cv, CVSettings)
    return FoldPlan(
        new_model=instantiate(cfg.model, _partial_=True, _recursive_=False),
        new_trainer=instantiate(cfg.trainer, _partial_=True),
        pretrain=typed(cfg.pretrain, PretrainSettings),
        stack=typed(cfg.stack, StackSettings),
        cv_seed=cv.seed,
        drug_threshold=cv.drug_threshold,
        rate_setting=peak_lr_setting(cfg.model.get("scheduler")),
    )


def fold_trainers(cfg: DictConfig) -> FoldTrainers:
    callbacks = {
        name: instantiate(node, _partial_=True) for name, node in (cfg.get("callbacks") or {}).items() if node is not None
    }
    return FoldTrainers(
        new_trainer=instantiate(cfg.trainer, _partial_=True),
        callbacks=callbacks,
        new_logger=instantiate(cfg.logger, _partial_=True) if cfg.get("logger") else None,
        rate_setting=peak_lr_setting(cfg.model.get("scheduler")),
    )


def memory_settings(cfg: DictConfig) -> dict:
    """What an out-of-memory error names to lower."""
    return {
        "loader.batch_size": cfg.loader.batch_size,
        "loader.eval_batch_size": cfg.loader.eval_batch_size,
        "model.net.hidden_size": cfg.model.get("net", {}).get("hidden_size"),
    }


def train(cfg: DictConfig) -> float:
    if cfg.get("ensemble") is not None and typed(cfg.ensemble, EnsembleSettings).models is not None:
        from moa_lit.ensemble import train_ensemble

        return train_ensemble(cfg, train, command_line_overrides())
    timer = PhaseTimer()
    check_train_settings(cfg, command_line_overrides())
    quiet_lightning()
    assign_job_gpu(cfg, multirun_job_number())
    check_trainer_devices(cfg.trainer)
    device = training_device(cfg.trainer)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # null: the cores given divided by the jobs of a parallel multirun or search.
    threads = configure_threads(cfg.get("num_threads"), parallel_jobs(this_jobs_hydra_config()))
    busy = busy_machine_line(threads)  # said once the folder is this run's (a log line opens train.log there)
    metric = check_optimized_metric(cfg.get("optimized_metric", NEW_DRUGS))
    seeds = [int(s) for s in cfg.seeds]
    if not seeds:
        raise MoAError("seeds=[]: expected at least one seed")
    cv = typed(cfg.cv, CVSettings)
    loader = typed(cfg.loader, LoaderSettings)
    features = typed(cfg.features, FeatureSettings)
    clip = typed(cfg.predict, PredictSettings).clip_range
    plan, trainers = fold_plan(cfg), fold_trainers(cfg)
    fold_ids = cv.fold_ids
    final_model = str(cfg.get("final_model", "fold_average"))
    refit = typed(cfg.refit, RefitSettings) if "refit" in cfg else RefitSettings()
    check_refit_possible(final_model, plan.pretrain.enabled, plan.stack.enabled, cv.folds is not None)
    run = RunDir(str(cfg.paths.output_dir))  # a folder named 2024 comes as a number
    check_apart_from_data(run.path, None if cfg.data.get("dir") is None else str(cfg.data.dir), "paths.output_dir")
    resume = bool(cfg.get("resume", False))
    # A new or empty folder, or (resume=true) this moa-lit's run; locked while written.
    with run.claimed("hydra.run.dir", resume) as resuming:
        run.start(OmegaConf.to_container(cfg, resolve=True), resuming)
        if busy:
            log.warning("%s", busy)
        if resuming:
            run.check_resume_keeps_outputs(seeds, fold_ids)

        with timer("data"):
            data = instantiate(cfg.data)
            fingerprint = with_content_hashes(data.fingerprint)
        run.record_data(fingerprint, resuming)
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
            folds = assign_folds(targets, data.drug, n_folds=cv.n_folds, seed=cv.seed, drug_threshold=cv.drug_threshold)
        new_drugs = new_drug_rows(data.drug, is_control, cv.drug_threshold)  # scores and best epochs
        warn_if_schedule_cannot_run(cfg, {k: int(((folds != k) & ~is_control).sum()) for k in fold_ids})
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
                data.layout, names, data.sample_submission_columns, seeds, fold_ids, clip=clip,
                final_model=final_model, refit_seeds=refit.seeds,
            )
            run.write_manifest(manifest)
            # Hydra's own copy is off (conf/hydra/default.yaml): written once the folder is this run's.
            run.write_hydra_record(cfg)

        dm = MoADataModule(
            data.train, targets, folds, is_control, list(data.layout.genes), list(data.layout.cells),
            feature_params=asdict(features), batch_size=loader.batch_size, eval_batch_size=loader.eval_batch_size,
            device=device, new_drugs=new_drugs,
        )
        cross_validation = CrossValidation(
            dm, run, plan, trainers, timer,
            test=None if data.test is None else TestRows(data.test, data.test_is_control),
            nonscored=None if data.nonscored is None else data.nonscored.to_numpy(dtype=np.float32),
            drug=None if data.drug is None else data.drug.to_numpy(),
            resume=resume, memory_settings=memory_settings(cfg),
        )
        preds = cross_validation.run_folds(seeds, fold_ids, clip)
        test_pred, refitted = preds.test, None
        if final_model != "fold_average":
            with timer("refit"):
                epochs = refit_epochs([f["best_epoch"] for f in preds.fold_summaries], refit.epoch_scale)
                refitted = refit_final_models(
                    plan, dm, run, refit.seeds, epochs,
                    test_features=None if data.test is None else data.test,
                    test_is_control=None if data.test is None else data.test_is_control,
                    clip=clip, resume=resume,
                )
            if test_pred is not None:
                test_pred = final_average(final_model, preds.test, refitted.test)

        with timer("writing"):
            scores = score_run(targets, preds.oof, folds, is_control, fold_ids, names, new_drugs, cv.drug_threshold)
            rows = np.isin(folds, fold_ids)
            oof = pd.DataFrame(preds.oof[rows], columns=names)
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


def continue_on_interrupt(cfg: DictConfig):
    """Ctrl-C / SIGTERM: one line with the command that resumes the run."""
    return say_how_to_continue("moa_lit.train", sys.argv[1:], Path(cfg.paths.output_dir))


hydra_main = hydra_command("train", train, around=continue_on_interrupt)


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


def data_folder_arg(argv: list[str]) -> str | None:
    """The data folder this command line reads, as given (data.dir, else the
    synthetic data's paths.data_dir); None when it is left to the config."""
    def last(key: str) -> str | None:
        values = [a.split("=", 1)[1] for a in argv if a.split("=", 1)[0].lstrip("+") == key and "=" in a]
        return values[-1] if values and not any(ch in values[-1] for ch in "${}") else None

    if last("data.dir"):
        return last("data.dir")
    return None if last("data") == "kaggle" else (last("paths.data_dir") or "data")


def main():
    args = sys.argv[1:]
    try:
        bad = unknown_group_choice(args) or compose_error(args)
        if bad:
            raise MoAError(bad)
        key, folder = output_folder_arg(args)
        check_writable_folder(folder, key)
        if key == "hydra.run.dir":  # before Hydra makes it (inside the data, perhaps)
            check_apart_from_data(folder, data_folder_arg(args), key)
    except MoAError as err:
        print(f"moa-lit: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    return hydra_main()


if __name__ == "__main__":
    main()
