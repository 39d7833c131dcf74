"""One table of bad settings, files and commands (issue 12, point 7): each ends
with exactly one ``moa-lit:`` line of at most a few hundred characters naming
the cause, the right exit status, no traceback, and no file outside the
command's own output folder changed (the data, a neighbouring finished run and
every other case's inputs are hashed before and after).

Commands run in-process (the same functions the entry points call, wrapped in
``run_and_exit_on_error``; ``train_main``: the whole entry point, Hydra
included, with its command line in ``sys.argv``) except a few that go
through a real interpreter, so the whole table stays fast."""

from __future__ import annotations

import errno
import logging
import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import compose_train, run_cli, tiny_run_overrides
from moa_lit import schema
from moa_lit.runs import files as run_files
from moa_lit.cli import run_and_exit_on_error

# -- the world every case runs in: synthetic data, a finished run, inputs ------------------------


def _can_mount_tmpfs(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    from moa_lit.train import train

    overrides = [*tiny_run_overrides(root, n_samples=500, epochs=1, n_scored=30), "num_threads=1"]
    neighbour = root / "runs" / "neighbour"
    cfg = compose_train([*overrides, f"paths.output_dir={neighbour}"])
    train(cfg)
    (neighbour / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, neighbour / run_files.CONFIG)  # as Hydra saves it, for merge
    # Runs that differ from the neighbour in one recorded fact, as merge reads them:
    # the SHA-1 of a data file (data.json), or one setting (settings.yaml).
    other_data = shutil.copytree(neighbour, root / "runs" / "other_data")
    fingerprint = json.loads((other_data / run_files.DATA_FINGERPRINT).read_text())
    fingerprint[schema.TRAIN_FEATURES]["sha1"] = "0" * 40
    (other_data / run_files.DATA_FINGERPRINT).write_text(json.dumps(fingerprint))
    other_setting = shutil.copytree(neighbour, root / "runs" / "other_setting")
    settings = OmegaConf.load(other_setting / run_files.SETTINGS)
    settings.model.net.hidden_size = 32
    OmegaConf.save(settings, other_setting / run_files.SETTINGS)
    data_dir = next((root / "data").glob("synthetic-*"))
    test_file = root / "inputs" / "new.csv"
    test_file.parent.mkdir()
    shutil.copy(data_dir / schema.TEST_FEATURES, test_file)
    shutil.copy(data_dir / schema.TEST_FEATURES, root / "inputs" / "X_top3.csv")
    (root / "inputs" / "a_file").write_text("not a folder\n")

    def kaggle_copy(name: str, damage: Callable[[Path], None]) -> Path:
        folder = root / "kaggle" / name
        shutil.copytree(data_dir, folder, ignore=shutil.ignore_patterns(".moa_cache", "manifest.json"))
        damage(folder)
        return folder

    def gzip_in_place(folder: Path) -> None:
        path = folder / schema.TRAIN_FEATURES
        path.write_bytes(gzip.compress(path.read_bytes()))

    def other_sample_ids(folder: Path) -> None:
        path = folder / schema.SAMPLE_SUBMISSION
        frame = pd.read_csv(path, dtype={schema.ID: str})
        frame.loc[0, schema.ID] = "id_not_in_test"
        frame.to_csv(path, index=False)

    # issue 20, one rule for writing: a folder of the user's files, a link to a device, a device node
    theirs = root / "theirs"
    (theirs / "report").mkdir(parents=True)
    for name in ("labels.csv", "submission.csv", "report/notes.md"):
        (theirs / name).write_text("the user's\n")
    (root / "inputs" / "null_link").symlink_to("/dev/null")
    (root / "other_run").mkdir()
    (root / "other_run" / run_files.RUN_MANIFEST).write_text("{}\n")  # a marker is enough to be left alone
    (root / "link_explained").mkdir()
    (root / "link_explained" / "calls.csv").symlink_to("/dev/null")
    try:  # a character device like /dev/null (root only), else a named pipe: special files both
        os.mknod(root / "inputs" / "device", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        os.mkfifo(root / "inputs" / "device")
    gz_input = root / "inputs" / "gz.csv"
    gz_input.write_bytes(gzip.compress(test_file.read_bytes()))
    mounts = {}
    for name, options in (("readonly", "size=64k,ro"), ("full", "size=96k")):
        mounts[name] = root / "mounts" / name if _can_mount_tmpfs(root / "mounts" / name, options) else None
    yield {
        "root": root,
        "overrides": [o for o in overrides if not o.startswith("allow_worse")],
        "neighbour": neighbour,
        "data_dir": data_dir,
        "input": test_file,
        "gzip_data": kaggle_copy("gzip", gzip_in_place),
        "other_ids_data": kaggle_copy("other_ids", other_sample_ids),
        "mounts": mounts,
    }
    for mount in mounts.values():
        if mount is not None:
            subprocess.run(["umount", str(mount)], capture_output=True)


def tree_hashes(root: Path, own: Path) -> dict[str, str]:
    """SHA-1 of every file under ``root`` except under the case's own folder
    (and the fault-injecting mounts, which only the case using one writes)."""
    hashes = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and own not in path.parents and root / "mounts" not in path.parents:
            hashes[str(path.relative_to(root))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return hashes


# -- the table -----------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    kind: str  # train | train_main | train_cli | predict | merge | blend
    args: list = field(default_factory=list)  # overrides; "{X}" filled from the world
    message: str = ""  # a substring of the one line
    status: int = 2
    needs: str | None = None  # a mount the case needs
    inject_full_disk: bool | str = False


CASES = [
    # settings: wrong type or out of range, every group users set
    Case("n_folds text", "train_main", ["cv.n_folds=abc"], "cv.n_folds='abc': expected a whole number >= 2"),
    Case("n_folds 1", "train", ["cv.n_folds=1"], "cv.n_folds=1: expected a whole number >= 2"),
    Case("n_folds float", "train_main", ["cv.n_folds=2.5"], "cv.n_folds=2.5: expected a whole number"),
    Case("cv seed negative", "train", ["cv.seed=-1"], "cv.seed=-1: expected a whole number >= 0"),
    Case("drug threshold 0", "train", ["cv.drug_threshold=0"], "cv.drug_threshold=0"),
    Case("folds repeated", "train", ["cv.folds=[0,0]"], "cv.folds=[0,0]: expected a list of distinct whole numbers"),
    Case("fold out of range", "train", ["cv.folds=[7]"], "cv.folds=[7]: expected fold numbers in 0..1"),
    Case("seeds repeated", "train", ["seeds=[0,0]"], "seeds=[0,0]: expected a list of distinct whole numbers >= 0, e.g. [0,1,2] (0 is repeated"),
    Case("seeds empty", "train", ["seeds=[]"], "seeds=[]: expected a list"),
    Case("seeds text", "train_main", ["seeds=[x]"], "seeds=['x']"),
    Case("seeds long and repeated", "train", ["seeds=[" + ",".join(["1"] * 400) + "]"], "seeds=[1,1,1,1,1,1,1,1,1,1,...]: expected"),
    Case("batch size 0", "train", ["loader.batch_size=0"], "loader.batch_size=0: expected a whole number >= 2"),
    Case("batch size 1", "train", ["loader.batch_size=1"], "loader.batch_size=1"),
    Case("eval batch negative", "train", ["loader.eval_batch_size=-5"], "loader.eval_batch_size=-5"),
    Case("max epochs 0", "train", ["trainer.max_epochs=0"], "trainer.max_epochs=0: expected a whole number >= 1"),
    Case("max epochs text", "train", ["trainer.max_epochs=abc"], "trainer.max_epochs='abc'"),
    Case("precision", "train", ["trainer.precision=17"], "trainer.precision=17: expected one of"),
    # A library's true/false parameter (read from its signature) refuses what the library would take as truthy.
    Case("optimizer fused text", "train", ["+model.optimizer.fused=maybe"], "model.optimizer.fused='maybe': expected true or false (or null)"),
    Case("scheduler flag number", "train", ["+model.scheduler.three_phase=1"], "model.scheduler.three_phase=1: expected true or false"),
    Case("trainer flag text", "train", ["trainer.enable_model_summary=yes"], "trainer.enable_model_summary='yes': expected true or false"),
    Case("gradient clip negative", "train", ["+trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1"),
    Case("hidden size 0", "train", ["model.net.hidden_size=0"], "model.net.hidden_size=0"),
    Case("layers negative", "train", ["model.net.n_layers=-1"], "model.net.n_layers=-1"),
    Case("dropout 1.5", "train", ["model.net.dropout_input=1.5"], "model.net.dropout_input=1.5: expected a number >= 0 and < 1"),
    Case("dropout negative", "train", ["model.net.dropout_hidden=-0.1"], "model.net.dropout_hidden=-0.1"),
    Case("activation", "train", ["model.net.activation_name=tanh"], "model.net.activation_name='tanh': expected one of elu"),
    Case("tabm members 0", "train", ["model=tabm", "model.net.k=0"], "model.net.k=0: expected a whole number >= 1"),
    Case("tabm embeddings", "train", ["model=tabm", "model.net.num_embeddings=periodic"],
         "model.net.num_embeddings='periodic': expected one of piecewise (or null)"),
    Case("tabm bins 1", "train", ["model=tabm", "model.net.n_bins=1"], "model.net.n_bins=1: expected a whole number >= 2"),
    Case("lr ignored by onecycle", "train", ["model.optimizer.lr=0.5"], "model.optimizer.lr=0.5 has no effect: the OneCycle schedule sets"),
    Case("lr negative", "train", ["model.scheduler=null", "model.optimizer.lr=-1"], "model.optimizer.lr=-1: expected a number > 0"),
    Case("weight decay", "train", ["model.optimizer.weight_decay=-1"], "model.optimizer.weight_decay=-1"),
    Case("max_lr 0", "train", ["model.scheduler.max_lr=0"], "model.scheduler.max_lr=0: expected a number > 0"),
    Case("pct_start", "train", ["model.scheduler.pct_start=1.5"], "model.scheduler.pct_start=1.5"),
    Case("label smoothing", "train", ["model.label_smoothing=0.7"], "model.label_smoothing=0.7: expected a number >= 0 and < 0.5"),
    Case("pca negative", "train", ["features.pca_genes=-3"], "features.pca_genes=-3"),
    Case("quantiles 1", "train", ["features.n_quantiles=1"], "features.n_quantiles=1"),
    Case("variance threshold", "train", ["features.variance_threshold=-1"], "features.variance_threshold=-1"),
    Case("rank gauss text", "train_main", ["features.rank_gauss=maybe"], "features.rank_gauss='maybe': expected true or false"),
    Case("control centring text", "train_main", ["features.control_centring=1"], "features.control_centring=1: expected true or false"),
    Case("control augmentation", "train", ["loader.control_augmentation=1.5"],
         "loader.control_augmentation=1.5: expected a number >= 0 and <= 1"),
    Case("clip reversed", "train", ["predict.clip=[0.9,0.1]"], "predict.clip=[0.9,0.1]: expected [lo, hi]"),
    Case("clip scalar", "train_main", ["predict.clip=0.5"], "predict.clip=0.5"),
    Case("pretrain epochs", "train", ["pretrain.enabled=true", "pretrain.max_epochs=0"], "pretrain.max_epochs=0"),
    Case("pretrain targets", "train", ["pretrain.targets=foo"], "pretrain.targets='foo': expected one of nonscored, scored+nonscored"),
    Case("pretrain enabled text", "train_main", ["pretrain.enabled=yes"], "pretrain.enabled='yes': expected true or false"),
    Case("stack inner folds", "train", ["stack.inner_folds=1"], "stack.inner_folds=1"),
    Case("threads 0", "train", ["num_threads=0"], "num_threads=0: expected a whole number >= 1 (or null)"),
    Case("samples 10", "train", ["data.n_samples=10"], "data.n_samples=10: expected a whole number >= 50"),
    Case("data variant", "train", ["data.variant=linear"], "data.variant='linear': expected one of saturating, additive, interaction"),
    Case("resume text", "train_main", ["resume=maybe"], "resume='maybe': expected true or false"),
    Case("allow text", "train_main", ["allow_worse_than_prior=2"], "allow_worse_than_prior=2: expected true or false"),
    Case("final model", "train", ["final_model=last"], "final_model='last': expected one of fold_average, refit, both"),
    Case("refit epoch scale", "train", ["final_model=refit", "refit.epoch_scale=0"], "refit.epoch_scale=0.0: expected a number > 0 and <= 10"),
    Case("refit seeds empty", "train", ["final_model=refit", "refit.seeds=[]"], "refit.seeds=[]: expected a list"),
    Case("calibration method", "train", ["calibration.method=platt"], "calibration.method='platt': expected one of none, temperature, affine"),
    Case("calibration strength 0", "train", ["calibration.strength=0"], "calibration.strength=0.0: expected a number > 0"),
    Case("calibration of a part", "train_main", ["calibration.method=affine", "cv.folds=[0]"],
         "calibration.method=affine with cv.folds set: each fold's OOF rows are calibrated on the other folds'"),
    Case("refit with pretraining", "train", ["final_model=refit", "pretrain.enabled=true"],
         "final_model=refit with pretrain.enabled=true: refitting trains the scored model only"),
    Case("ensemble model override", "train", ["experiment=ensemble", "model.net.hidden_size=32"],
         "model.net.hidden_size=32 has no effect in an ensemble run"),
    Case("ensemble member null", "train", ["experiment=ensemble", "ensemble.models.linear=null"],
         "expected a model config, e.g. +model@ensemble.models.linear=linear"),
    Case("ensemble of one family", "train", ["experiment=ensemble", "~ensemble.models.linear"],
         "ensemble.models=['mlp']: expected at least two model families"),
    Case("ensemble member setting", "train", ["experiment=ensemble", "ensemble.models.linear.net.dropout_input=1.5"],
         "ensemble.models.linear.net.dropout_input=1.5: expected a number >= 0 and < 1"),
    # files
    Case("data folder missing", "train", ["data=kaggle", "data.dir={root}/nowhere"], "data folder not found: "),
    Case("data folder is a file", "train", ["data=kaggle", "data.dir={root}/inputs/a_file"], "data path is a file, not a folder"),
    Case("gzip named csv", "train", ["data=kaggle", "data.dir={gzip_data}", "data.use_cache=false"],
         "train_features.csv: the file is gzip-compressed but named train_features.csv; rename it to train_features.csv.gz"),
    Case("sample ids differ", "train", ["data=kaggle", "data.dir={other_ids_data}", "data.use_cache=false"],
         "sample_submission.csv: its sig_ids differ from test_features.csv's: 1 not in test_features.csv (e.g. id_not_in_test)"),
    # file system
    Case("run dir under a file", "train_main", ["hydra.run.dir={root}/inputs/a_file/run"], "is a file, not a folder"),
    Case("run dir read-only", "train_main", ["hydra.run.dir={mount_readonly}/run"], "is on a read-only file system", needs="readonly"),
    Case("unknown model", "train_main", ["model=xyz"], "model=xyz: no such model config"),
    Case("disk full (injected)", "train", [], "folds.csv: no space left on the device; free some space or write elsewhere (ENOSPC)",
         inject_full_disk=True),
    Case("disk full in a library's writer", "train", [], "a file under {own}/run: no space left on the device",
         inject_full_disk="nameless"),
    Case("disk full (tmpfs)", "train", ["paths.output_dir={mount_full}/run"], "no space left on the device", needs="full"),
    # a run not to be trusted: outputs written, exit 3
    Case("diverged run", "train", ["model.scheduler.max_lr=1000", "trainer.max_epochs=2"],
         "this run should not be trusted: ", status=3),
    # predict
    Case("predict output folder", "predict", ["output={root}/inputs"], "output={root}/inputs is a folder; expected a file name"),
    Case("predict output slash", "predict", ["output={own}/preds/"], "ends with '/', a folder; expected a file name"),
    Case("predict top-k over input", "predict", ["input={root}/inputs/X_top3.csv", "output={root}/inputs/X.csv", "top_k=3"],
         "would write the top-3 table to {root}/inputs/X_top3.csv, the input file"),
    Case("predict output is input", "predict", ["output={input}"], "is the input file"),
    Case("predict no run", "predict", ["run_dir={root}/runs/missing"], "runs/missing"),
    Case("predict top_k text", "predict", ["top_k=abc"], "top_k='abc': expected a whole number >= 0 (or null)"),
    Case("predict gzip input", "predict", ["input={root}/inputs/gz.csv"], "the file is gzip-compressed but named gz.csv"),
    Case("predict read-only output", "predict", ["output={mount_readonly}/p.csv"], "read-only file system", needs="readonly"),
    # merge and blend
    Case("merge no runs", "merge", ["runs=[]"], "runs=[]: expected the run folders to merge"),
    Case("merge output under a file", "merge", ["runs=[{neighbour}]", "output_dir={root}/inputs/a_file/merged"], "is a file, not a folder"),
    Case("blend no runs", "blend", [], "runs= is missing"),
    # outputs never over inputs or another run
    Case("train over a finished run", "train", ["paths.output_dir={neighbour}"], "already holds a run; add resume=true"),
    Case("merge into its own run", "merge", ["runs=[{neighbour}]", "output_dir={neighbour}"],
         "is or holds {neighbour}, one of the runs this command reads"),
    # issue 20: no overwrite=true any more (replacing a run means deleting it first)
    Case("merge into another run", "merge", ["runs=[{root}/runs/missing]", "output_dir={neighbour}"],
         "output_dir={neighbour} already holds a run; delete it first, or choose a new output_dir"),
    Case("merge runs named like numbers", "merge", ["runs=[2024,7]"], "runs: 2024 is not a folder"),
    Case("blend into one of its runs", "blend", ["runs=[{root}/runs/missing,{neighbour}]", "output_dir={neighbour}/blend"],
         "is or holds {neighbour}, one of the runs this command reads"),
    Case("blend into another run", "blend", ["runs=[{root}/runs/a,{root}/runs/b]", "output_dir={neighbour}"],
         "output_dir={neighbour} already holds a run; delete it first"),
    Case("predict into its run", "predict", ["output={neighbour}/preds.csv"], "is inside the run it reads ({neighbour})"),
    Case("predict over the run's submission", "predict", ["output={neighbour}/submission.csv"],
         "is inside the run it reads"),
    Case("train into its data folder", "train", ["data=kaggle", "data.dir={data_dir}", "paths.output_dir={data_dir}"],
         "paths.output_dir={data_dir} is the data folder data.dir={data_dir}; expected a run folder apart from the data"),
    Case("train run dir inside the data", "train_main", ["data=kaggle", "data.dir={data_dir}", "hydra.run.dir={data_dir}/run"],
         "hydra.run.dir={data_dir}/run lies inside the data folder data.dir={data_dir}"),
    Case("train run dir holds the data", "train_main", ["data.dir={root}/data", "hydra.run.dir={root}"],
         "hydra.run.dir={root} holds the data folder data.dir={root}/data"),
    Case("train run dir is the synthetic data dir", "train_main", ["paths.data_dir={root}/data", "hydra.run.dir={root}/data"],
         "hydra.run.dir={root}/data is the data folder"),
    Case("predict explanations into its run", "predict", ["explain=true", "explain_dir={neighbour}/explained"],
         "explain_dir={neighbour}/explained is, lies inside or holds run_dir={neighbour}"),
    Case("predict explanations into the reference data", "predict", ["explain=true", "reference={data_dir}", "explain_dir={data_dir}/explained"],
         "explain_dir={data_dir}/explained is, lies inside or holds reference={data_dir}"),
    Case("data dir named like a whole number", "train", ["data=kaggle", "data.dir=2024"], "data folder not found: "),
    Case("data dir that reads as a float", "train", ["data=kaggle", "data.dir=1e3"],
         "data.dir=1000.0: expected a path (or null); a folder name that reads as a number is quoted: data.dir='<name>'"),
    Case("log dir that reads as a float", "train", ["paths.log_dir=1e3"], "paths.log_dir=1000.0: expected a path"),
    Case("logger null", "train_main", ["logger=null"], "logger=null: expected one of the logger configs (csv, tensorboard); to leave it out, write ~logger"),
    Case("blend missing run", "blend", ["runs=[{root}/runs/missing,{neighbour}]", "output_dir={own}/blend"], "runs/missing"),
    Case("blend of one run twice", "blend", ["runs=[{neighbour},{neighbour}/../neighbour]"], "runs: {neighbour}/../neighbour is given twice; expected each run once"),
    Case("merge runs as one plain path", "merge", ["runs={root}/runs/missing"], "{root}/runs/missing"),
    # through a real interpreter: Hydra's parsing and the entry point's exit
    Case("cli n_folds text", "train_cli", ["cv.n_folds=abc"], "cv.n_folds='abc': expected a whole number >= 2"),
    Case("cli lr ignored", "train_cli", ["model.optimizer.lr=0.5"], "model.optimizer.lr=0.5 has no effect"),
    Case("cli refit with stacking", "train_cli", ["final_model=refit", "stack.enabled=true"],
         "final_model=refit with stack.enabled=true: refitting trains the scored model only"),
    Case("cli ensemble model override", "train_cli", ["experiment=ensemble", "model.net.dropout_input=0.3"],
         "has no effect in an ensemble run (ensemble.models is set)"),
    # merge and blend are honest (issue 20, point 6): parts of one cross-validation, runs of one data
    Case("merge parts of other data", "merge", ["runs=[{neighbour},{root}/runs/other_data]"],
         "runs: {root}/runs/other_data was trained on other data than {neighbour}: train_features.csv (SHA-1 "),
    Case("merge parts with another setting", "merge", ["runs=[{neighbour},{root}/runs/other_setting]"],
         "runs: {root}/runs/other_setting differs from {neighbour} in model.net.hidden_size: 64 -> 32; expected runs that differ only in cv.folds"),
    Case("blend runs of other data", "blend", ["runs=[{neighbour},{root}/runs/other_data]", "output_dir={own}/blend"],
         "was trained on other data than {neighbour}: train_features.csv (SHA-1 "),
    # issue 20, one rule for writing: only into a folder moa-lit made; predict never over what is not its own
    Case("predict over the training data", "predict", ["output={data_dir}/train_features.csv"],
         "output={data_dir}/train_features.csv exists in a data folder"),
    Case("predict over the sample submission", "predict", ["output={data_dir}/sample_submission.csv"],
         "output={data_dir}/sample_submission.csv exists in a data folder"),
    Case("predict over a link to a device", "predict", ["output={root}/inputs/null_link"], "null_link is a symbolic link"),
    Case("predict over a device node", "predict", ["output={root}/inputs/device"],
         "output={root}/inputs/device is not a regular file (a device, pipe or socket)"),
    Case("predict explanations over a link", "predict", ["explain=true", "explain_dir={root}/link_explained"],
         "explain_dir={root}/link_explained/calls.csv is a symbolic link"),
    Case("predict explanations into another run", "predict", ["explain=true", "explain_dir={root}/other_run/explained"],
         "explain_dir={root}/other_run/explained is inside a run's output folder ({root}/other_run)"),
    Case("predict over another file", "predict", ["output={root}/inputs/a_file"], "a_file exists and is not a predictions file of this run"),
    Case("train into the user's folder", "train", ["paths.output_dir={root}/theirs"],
         "paths.output_dir={root}/theirs holds files moa-lit did not write there (labels.csv, report, submission.csv) and no run.json"),
    Case("resume in the user's folder", "train", ["paths.output_dir={root}/theirs", "resume=true"],
         "holds files moa-lit did not write there"),
    Case("merge into the user's folder", "merge", ["runs=[{neighbour}]", "output_dir={root}/theirs"],
         "output_dir={root}/theirs holds files moa-lit did not write there"),
    Case("blend into the user's folder", "blend", ["runs=[{neighbour},{root}/runs/other_setting]", "output_dir={root}/theirs"],
         "output_dir={root}/theirs holds files moa-lit did not write there"),
    Case("ensemble into its data folder", "train", ["experiment=ensemble", "data=kaggle", "data.dir={data_dir}", "paths.output_dir={data_dir}"],
         "paths.output_dir={data_dir} is the data folder data.dir={data_dir}"),
    Case("ensemble inside its data folder", "train", ["experiment=ensemble", "data=kaggle", "data.dir={data_dir}", "paths.output_dir={data_dir}/ens"],
         "paths.output_dir={data_dir}/ens lies inside the data folder"),
    # issue 20: checks in one place (settings.py), refused before Hydra makes a folder, exact targets
    Case("fold beyond n_folds through Hydra", "train_main", ["cv.folds=[5]"], "cv.folds=[5]: expected fold numbers in 0..1 (cv.n_folds=2)"),
    Case("optimized metric through Hydra", "train_main", ["optimized_metric=val_loss"],
         "optimized_metric='val_loss': expected one of oof_logloss_new_drugs, oof_logloss, oof_logloss_treated"),
    Case("unresolvable interpolation", "train_main", ["cv.seed=${{oops}}"], "cv.seed: cannot be resolved (Interpolation key 'oops' not found"),
    Case("unknown key", "train_main", ["cv.n_fold=3"], "cv.n_fold: Key 'n_fold' not in 'CVSettings'; expected one of n_folds, seed, drug_threshold, folds"),
    Case("pca over a small fold's rows", "train", ["features.pca_genes=400"],
         "features.pca_genes=400: expected at most 221, the training rows of the smallest fold"),
    Case("quantiles over the rows", "train", ["features.n_quantiles=20000"],
         "features.n_quantiles=20000: expected at most 221, the training rows of the smallest fold"),
    Case("precision 64-true", "train", ["trainer.precision=64-true"], "trainer.precision='64-true': expected one of auto, 32-true"),
    Case("validation after the last epoch", "train", ["trainer.check_val_every_n_epoch=2"],
         "trainer.check_val_every_n_epoch=2: expected at most trainer.max_epochs=1"),
    Case("hydra callback target", "train_main",
         ["+hydra.callbacks.x._target_=moa_lit.runs.files.write_text", "+hydra.callbacks.x.text=pwned",
          "+hydra.callbacks.x.path={root}/inputs/pwned.txt"],
         "Target 'moa_lit.runs.files.write_text' is not in the Hydra execution whitelist. moa-lit builds only the classes listed"),
    Case("attribute path through a module", "train_main", ["model.optimizer._target_=moa_lit.cli.os.system"],
         "model.optimizer._target_=moa_lit.cli.os.system: this target is not allowed"),
    Case("ensemble member target", "train_main", ["experiment=ensemble", "ensemble.models.linear.optimizer._target_=moa_lit.cli.os.system"],
         "ensemble.models.linear.optimizer._target_=moa_lit.cli.os.system: this target is not allowed"),
    Case("explain no", "predict", ["explain=no"], "explain='no': expected true or false"),
    Case("library refusal named", "train", ["model.optimizer.weight_decay=-1"], "model.optimizer.weight_decay=-1: Invalid weight_decay value: -1"),
    Case("cli sweeper n_trials text", "train_cli",
         ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=abc", "hydra.sweep.dir={own}/run"],
         "hydra.sweeper.n_trials='abc': Value 'abc' of type 'str' could not be converted to Integer"),
    Case("cli optimized metric", "train_cli", ["optimized_metric=val_loss"], "optimized_metric='val_loss': expected one of"),
]


def _fill(text: str, world: dict, own: Path) -> str:
    mounts = world["mounts"]
    values = {
        "root": world["root"], "own": own, "neighbour": world["neighbour"], "input": world["input"],
        "gzip_data": world["gzip_data"], "other_ids_data": world["other_ids_data"], "data_dir": world["data_dir"],
        "mount_readonly": mounts["readonly"], "mount_full": mounts["full"],
    }
    return text.format(**{k: str(v) for k, v in values.items()})


def _run(case: Case, args: list[str], world: dict, own: Path, monkeypatch) -> int | None:
    """Runs the case; returns the exit status (None: returned normally)."""
    import moa_lit.train as train_module

    try:
        if case.kind == "train":
            base = world["overrides"]
            if "data=kaggle" in args:  # the synthetic generator's keys are not the Kaggle reader's
                base = [o for o in base if not o.startswith("data.")]
            overrides = [*base, f"paths.output_dir={own / 'run'}", *args]
            # What Hydra records as the command line, for the checks that read it.
            monkeypatch.setattr(train_module, "command_line_overrides", lambda: list(args))
            run_and_exit_on_error(train_module.train, compose_train(overrides))
        elif case.kind == "train_main":  # Hydra's entry point, in-process
            base = world["overrides"]
            if "data=kaggle" in args:
                base = [o for o in base if not o.startswith("data.")]
            monkeypatch.setattr(sys, "argv", ["moa_lit.train", *base, f"hydra.run.dir={own / 'run'}", *args])
            root = logging.getLogger()
            handlers, level = list(root.handlers), root.level
            try:
                train_module.main()
            finally:  # Hydra's logging setup points at this case's captured streams
                root.handlers[:] = handlers
                root.setLevel(level)
        elif case.kind == "predict":
            from moa_lit.predict import predict

            settings = {"run_dir": str(world["neighbour"]), "input": str(world["input"]),
                        "output": str(own / "predictions.csv"), "top_k": 0, "num_threads": 1}
            for arg in args:
                key, value = arg.split("=", 1)
                settings[key] = _yaml_value(value)  # as Hydra reads the command line
            run_and_exit_on_error(predict, OmegaConf.create(settings))
        elif case.kind == "merge":
            from moa_lit.merge import merge

            settings = {"runs": [], "output_dir": str(own / "merged"), "paths": {"output_dir": str(own / "merged")}}
            for arg in args:
                key, value = arg.split("=", 1)
                settings[key] = _yaml_value(value)
            run_and_exit_on_error(merge, OmegaConf.create(settings))
        elif case.kind == "blend":
            from moa_lit.blend import run as blend

            settings = {"runs": None, "output_dir": str(own / "blended"), "paths": {"output_dir": str(own / "blended")}}
            for arg in args:
                key, value = arg.split("=", 1)
                settings[key] = _yaml_value(value)
            run_and_exit_on_error(blend, OmegaConf.create(settings))
        else:
            raise AssertionError(case.kind)
    except SystemExit as done:
        return done.code
    return None


def _yaml_value(text: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(f"k={text}").value()


@pytest.mark.parametrize("case", [c for c in CASES if c.kind != "train_cli"], ids=lambda c: c.id)
def test_bad_command_is_one_line_and_touches_nothing_else(case, world, tmp_path, monkeypatch, capsys):
    if case.needs and world["mounts"][case.needs] is None:
        pytest.skip(f"cannot mount a {case.needs} tmpfs here (needs root)")
    own = tmp_path / "own"
    own.mkdir()
    args = [_fill(a, world, own) for a in case.args]
    if case.inject_full_disk:
        def full(*a, **kw):
            raise OSError(errno.ENOSPC, "No space left on device")  # as a library raises it: no file named

        if case.inject_full_disk == "nameless":  # a library writing on its own, not through atomic_path
            from lightning.pytorch.loggers import CSVLogger

            monkeypatch.setattr(CSVLogger, "log_metrics", full)
        else:  # the writer of every run table (moa_lit.runs.files.write_csv)
            import pyarrow.csv

            monkeypatch.setattr(pyarrow.csv, "write_csv", full)
    before = tree_hashes(world["root"], own)
    capsys.readouterr()
    status = _run(case, args, world, own, monkeypatch)
    err = capsys.readouterr().err
    assert status == case.status, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("moa-lit:")]
    assert len(lines) == 1, err[-2000:]
    line = lines[0]
    print(line)  # shown with -rA: the table of messages
    assert "Traceback" not in err
    assert _fill(case.message, world, own) in line, line
    assert len(line) <= 500, len(line)  # a few hundred characters at most
    assert tree_hashes(world["root"], own) == before
    if case.kind == "train_main":  # a refused command leaves no folder behind, not even an empty one
        assert not (own / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "train_cli"], ids=lambda c: c.id)
def test_bad_command_line_is_one_line_through_the_interpreter(case, world, tmp_path):
    own = tmp_path / "own"
    before = tree_hashes(world["root"], own)
    args = [_fill(a, world, own) for a in case.args]
    proc = run_cli("moa_lit.train", [*world["overrides"], f"hydra.run.dir={own / 'run'}", *args], cwd=tmp_path, timeout=300)
    assert proc.returncode == case.status, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("moa-lit:")]
    assert len(lines) == 1 and case.message in lines[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert tree_hashes(world["root"], own) == before
    assert not (own / "run").exists()  # refused before Hydra makes the run folder, not even an empty one
    assert [p for p in tmp_path.iterdir() if p != own] == []  # no outputs/ either


def test_a_long_message_is_cut_in_the_middle():
    from moa_lit.cli import one_line

    line = one_line("seeds=[" + "1," * 2000 + "1]:\n expected distinct seeds")
    assert len(line) <= 600 and line.startswith("seeds=[1,1") and line.endswith("expected distinct seeds")
    assert "\n" not in line


def test_every_case_has_its_own_name():
    assert len({c.id for c in CASES}) == len(CASES)


# -- a second writer changes no byte of a folder it does not own ---------------------------------


def all_bytes(folder: Path) -> dict[str, str]:
    """Every file under ``folder``, hidden ones (.hydra/, .lock) included."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_train_refused_on_a_finished_run_writes_nothing_there_not_even_hydra_files(world, tmp_path):
    neighbour = world["neighbour"]
    before = all_bytes(neighbour)
    proc = run_cli("moa_lit.train", [*world["overrides"], f"hydra.run.dir={neighbour}"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("moa-lit:")]
    assert len(lines) == 1 and "already holds a run; add resume=true" in lines[0], proc.stderr[-2000:]
    assert all_bytes(neighbour) == before  # no .hydra/ rewritten, no train.log added


def test_two_predicts_writing_one_output_the_second_gets_one_line_naming_the_first(world, tmp_path, capsys):
    from moa_lit.predict import lock_file, predict

    output = tmp_path / "preds.csv"
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from moa_lit.runs.locks import hold_lock\n"
        "with hold_lock(Path(sys.argv[1]), 'x'):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(120)\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock_file(output))], stdout=subprocess.PIPE, text=True, env=env)
    settings = OmegaConf.create({"run_dir": str(world["neighbour"]), "input": str(world["input"]), "output": str(output),
                                 "top_k": 0, "num_threads": 1})
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            run_and_exit_on_error(predict, settings)
        err = capsys.readouterr().err
        assert done.value.code == 2
        (line,) = [x for x in err.splitlines() if x.startswith("moa-lit:")]
        assert f"output={output} is being written by process {holder.pid} on " in line and " since " in line, line
        assert not output.exists()
    finally:
        holder.kill()
        holder.wait()
    assert predict(settings) == output and output.is_file()  # the killed holder's lock is gone with it
    assert not lock_file(output).exists()


def test_a_merge_or_blend_of_an_untrusted_run_is_untrusted(world, tmp_path, monkeypatch, capsys):
    """The untrusted mark carries over: scores.json names the untrusted run, and
    merge and blend end as train did for it (exit status 3, outputs kept)."""
    import moa_lit.train as train_module
    from moa_lit.blend import run as blend
    from moa_lit.merge import merge

    part = tmp_path / "diverged"
    monkeypatch.setattr(train_module, "command_line_overrides", lambda: [])
    overrides = [*world["overrides"], "model.scheduler.max_lr=1000", "trainer.max_epochs=2", f"paths.output_dir={part}"]
    with pytest.raises(SystemExit) as trained:
        run_and_exit_on_error(train_module.train, compose_train(overrides))
    assert trained.value.code == 3
    mark = f"{part} is untrusted ({'; '.join(json.loads((part / 'scores.json').read_text())['untrusted'])})"
    merged, blended = tmp_path / "merged", tmp_path / "blended"
    for command, out in (
        (lambda: run_and_exit_on_error(merge, OmegaConf.create({"runs": [str(part)], "output_dir": str(merged), "paths": {"output_dir": str(merged)}})), merged),
        (lambda: run_and_exit_on_error(blend, OmegaConf.create({"runs": [str(world["neighbour"]), str(part)], "output_dir": str(blended)})), blended),
    ):
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            command()
        assert done.value.code == 3, capsys.readouterr().err[-2000:]
        assert "moa-lit: warning: this run should not be trusted: " in capsys.readouterr().err
        assert mark in json.loads((out / "scores.json").read_text())["untrusted"]
