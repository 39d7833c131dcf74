"""``python -m moa_lit.predict run_dir=... input=... [output=...] [top_k=N]``:
score new profiles with a saved training run, retraining nothing.

Every seed x fold model of the run is loaded (its fitted preprocessor and its
best checkpoint), the input is checked against the run's feature layout with
the same one-line errors as training, and the probabilities are averaged over
folds and seeds exactly as training averages its test predictions (so both
agree on the same file), control rows set to 0. A run trained with
``final_model=refit`` predicts with its models refitted on every training
row instead (``both``: the mean of the two averages), and an ensemble or a
blend with its members' predictions weighted as in its run.json."""

from __future__ import annotations

import logging
import re
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from moa_lit import schema
from moa_lit.cli import configure_threads, hydra_command, parallel_jobs, this_jobs_hydra_config
from moa_lit.data import reader
from moa_lit.errors import MoAError
from moa_lit.explain import command as explain_command
from moa_lit.fs_errors import check_output_file
from moa_lit.runs import files
from moa_lit.runs.locks import hold_lock
from moa_lit.runs.manifest import RunManifest
from moa_lit.runs.run_dir import FLOAT_FORMAT, FoldDir, RunDir
from moa_lit.settings import PredictConfig, check_config
from moa_lit.training.fold_predictor import FoldPredictor

log = logging.getLogger("moa_lit.predict")


def _fold_dirs(run: RunDir, manifest: RunManifest, refit: bool = False) -> list[FoldDir]:
    """Every fold folder the manifest promises (or, ``refit``, every refitted
    model's), checked to hold both files first, so a half-copied run is named
    before anything is loaded."""
    folders = run.refits_of(manifest) if refit else run.folds_of(manifest)
    missing = [
        path for fold_dir in folders for path in (fold_dir.preprocessor, fold_dir.best_checkpoint) if not path.is_file()
    ]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise MoAError(
            f"{missing[0]}: missing{more}; the run's {len(folders)} seed x fold models each need "
            f"{files.PREPROCESSOR} and {files.BEST_CHECKPOINT} (was the run copied whole, "
            "and trained with callbacks.model_checkpoint on?)"
        )
    return folders


def inference_device(choice: str | None = "auto") -> torch.device:
    """``device=auto`` predicts on the GPU when there is one, else on the CPU
    (``device`` is one of auto, cpu, cuda: settings.PredictConfig)."""
    choice = "auto" if choice is None else str(choice)
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise MoAError("device=cuda was requested but no CUDA GPU is available; use device=cpu or device=auto")
    return torch.device(choice)


def load_fold_predictors(
    run: RunDir, manifest: RunManifest, device: torch.device | str = "cpu", refit: bool = False
) -> list[FoldPredictor]:
    """The seed x fold models, or (``refit``) the models refitted on every row."""
    n_targets = len(manifest.target_names)
    return [FoldPredictor.load(fold_dir, n_targets, device) for fold_dir in _fold_dirs(run, manifest, refit)]


def ensemble_probabilities(
    predictors: list[FoldPredictor], features: pd.DataFrame, clip: tuple[float, float] | None = None
) -> np.ndarray:
    """Mean over seeds and folds, summed in training's order (seed, then fold)
    and in float64, so the result matches training's test predictions."""
    total = None
    for predictor in predictors:
        pred = predictor.predict(features)
        total = pred if total is None else total + pred
    probabilities = total / len(predictors)
    if clip is not None:
        probabilities = np.clip(probabilities, *clip)
    probabilities[(features[schema.CP_TYPE] == schema.CONTROL).to_numpy()] = 0.0  # no MoA by definition
    return probabilities


def run_probabilities(
    run: RunDir,
    features: pd.DataFrame,
    manifest: RunManifest,
    device: torch.device | str = "cpu",
    predictors: list[FoldPredictor] | None = None,
) -> np.ndarray:
    """The run's probabilities (target order of run.json): its fold models'
    average (``predictors``: already loaded from the run), its refitted
    models' average, or the mean of both (``final_model``), as training
    wrote its submission; for a blend or ensemble the weighted average of its
    member runs'."""
    if not manifest.is_blend:
        parts = []
        if manifest.uses_fold_models:
            if predictors is None:
                predictors = load_fold_predictors(run, manifest, device)
            parts.append(ensemble_probabilities(predictors, features, clip=manifest.clip))
        if manifest.uses_refit_models:
            refitted = load_fold_predictors(run, manifest, device, refit=True)
            parts.append(ensemble_probabilities(refitted, features, clip=manifest.clip))
        return parts[0] if len(parts) == 1 else (parts[0] + parts[1]) / 2
    total = np.zeros((len(features), len(manifest.target_names)))
    for member in manifest.members:
        member_run = RunDir(member.folder(run.path))
        member_manifest = member_run.manifest()
        if member_manifest.target_names != manifest.target_names:
            raise MoAError(f"{member_run.path}: its targets differ from the blend's run.json; expected the blended runs")
        total += member.weight * run_probabilities(member_run, features, member_manifest, device)
    return total


def predict_frame(
    run_dir: Path,
    features: pd.DataFrame,
    manifest: RunManifest | None = None,
    device: torch.device | str = "cpu",
    predictors: list[FoldPredictor] | None = None,
) -> pd.DataFrame:
    """sig_id + one probability column per target, in the run's submission column order."""
    run = RunDir(run_dir)
    manifest = manifest or run.manifest()
    frame = pd.DataFrame(run_probabilities(run, features, manifest, device, predictors), columns=manifest.target_names)
    frame.insert(0, schema.ID, features[schema.ID].to_numpy())
    return frame[manifest.output_columns]


def model_count(run: RunDir, manifest: RunManifest) -> int:
    if not manifest.is_blend:
        folds = len(manifest.seeds) * len(manifest.folds) if manifest.uses_fold_models else 0
        return folds + (len(manifest.refit_seeds) if manifest.uses_refit_models else 0)
    members = [RunDir(m.folder(run.path)) for m in manifest.members]
    return sum(model_count(m, m.manifest()) for m in members)


def top_k_table(predictions: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k most likely MoAs of each sample, one row each, most likely first.
    Zero probabilities (control rows) are left out: they rank nothing."""
    names = np.array([c for c in predictions.columns if c != schema.ID])
    p = predictions[names].to_numpy()
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(p, order, axis=1)
    table = pd.DataFrame(
        {
            schema.ID: np.repeat(predictions[schema.ID].to_numpy(), order.shape[1]),
            "rank": np.tile(np.arange(1, order.shape[1] + 1), len(p)),
            "moa": names[order].ravel(),
            "probability": top.ravel(),
        }
    )
    return table[table["probability"] > 0].reset_index(drop=True)


def _stem(path: Path) -> str:
    return re.sub(r"(\.csv)?(\.gz|\.zip)?$", "", path.name)


def _required(cfg: DictConfig, key: str) -> str:
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise MoAError(
            f"{key} is required: python -m moa_lit.predict run_dir=<training run folder> input=<features.csv>"
        )
    return str(cfg[key])


def _top_k(value, n_targets: int) -> int:
    if value in (None, 0):
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n_targets:
        raise MoAError(f"top_k={value}: expected a whole number from 1 to {n_targets} (the number of targets)")
    return value


def check_not_in_a_run(path: Path, run: RunDir, overwrite: bool) -> None:
    """A predictions file is never written into the run it reads, nor into
    another run's folder, unless ``overwrite=true``."""
    folder = RunDir(path.parent)
    inside = path.resolve().parent == run.path.resolve() or run.path.resolve() in path.resolve().parents
    if (inside or folder.holds_outputs()) and not overwrite:
        which = "the run it reads" if inside else "a run's output folder"
        raise MoAError(
            f"output={path} is inside {which} ({run.path if inside else folder.path}); expected a path outside run "
            "folders, or add overwrite=true"
        )


def check_explain_folder_apart(folder: Path, run: RunDir, reference: str | None) -> None:
    """The explanations folder is never the run read, the reference data, inside
    or around either (its files would land among them)."""
    ins = [("run_dir", run.path)] + ([("reference", Path(reference).expanduser())] if reference else [])
    out = folder.resolve()
    for key, source in ins:
        source = source.resolve()
        if out == source or source in out.parents or out in source.parents:
            raise MoAError(
                f"explain_dir={folder} is, lies inside or holds {key}={source}, which this command reads; "
                "expected a folder apart from its inputs"
            )


def lock_file(path: Path) -> Path:
    """The lock beside an output file or folder (``.<name>.lock``)."""
    return path.with_name(f".{path.name}.lock")


def predict(cfg: DictConfig) -> Path:
    with ExitStack() as held:
        return _predict(cfg, held)


def _predict(cfg: DictConfig, held: ExitStack) -> Path:
    run_dir = Path(_required(cfg, "run_dir")).expanduser()
    source = Path(_required(cfg, "input")).expanduser()
    check_config(cfg, PredictConfig)
    run = RunDir(run_dir)
    manifest = run.manifest()
    top_k = _top_k(cfg.get("top_k"), len(manifest.target_names))
    output = check_output_file(str(cfg.output), "output") if cfg.get("output") else Path(f"{_stem(source)}_predictions.csv")
    if output.resolve() == source.resolve():
        raise MoAError(f"output={output} is the input file; expected another path (it would be overwritten)")
    top_path = output.with_name(f"{_stem(output)}_top{top_k}.csv") if top_k else None
    if top_path is not None and top_path.resolve() == source.resolve():
        raise MoAError(
            f"output={output} with top_k={top_k} would write the top-{top_k} table to {top_path}, the input file; "
            "expected another output name"
        )
    for path in (output, top_path):
        if path is not None:
            check_not_in_a_run(path, run, bool(cfg.get("overwrite", False)))
    if not source.is_file():
        raise MoAError(f"input={source}: no such file; expected a features CSV in the layout of {schema.TEST_FEATURES}")
    explain_settings = explain_command.check(cfg, top_k, manifest, run_dir, output) if cfg.get("explain") else None
    if explain_settings:
        check_explain_folder_apart(explain_settings.folder, run, explain_settings.reference)
    # Held until every output is written: a second predict writing the same
    # output (or explanations folder) gets one line naming this process.
    held.enter_context(hold_lock(lock_file(output), f"output={output}"))
    if explain_settings:
        held.enter_context(hold_lock(lock_file(explain_settings.folder), f"explain_dir={explain_settings.folder}"))
    configure_threads(cfg.get("num_threads"), parallel_jobs(this_jobs_hydra_config()))
    device = inference_device(cfg.get("device"))

    features = reader.read_features(source, manifest.layout, role=f"input {source}")
    if features.empty:
        raise MoAError(f"input {source}: no rows; expected at least one sample to predict")
    # explain=true needs the fold predictors too: loaded once for both.
    predictors = load_fold_predictors(run, manifest, device) if explain_settings else None
    predictions = predict_frame(run_dir, features, manifest, device, predictors)
    # explain=true: computed (and its inputs checked) before anything is written.
    explained = (
        explain_command.explain(explain_settings, run_dir, manifest, features, predictions, predictors)
        if explain_settings
        else None
    )
    files.write_csv(predictions, output, float_format=FLOAT_FORMAT)
    written = [output]
    if top_path is not None:
        files.write_csv(top_k_table(predictions, top_k), top_path, float_format=FLOAT_FORMAT)
        written.append(top_path)
    if explained is not None:
        written += explained.write(explain_settings.folder)
    n_control = int((features[schema.CP_TYPE] == schema.CONTROL).sum())
    print(
        f"Predicted {len(features)} samples ({n_control} controls at 0) with "
        f"{model_count(run, manifest)} models of {run_dir}\nOutputs: "
        + ", ".join(str(p) for p in written),
        flush=True,
    )
    return output


main = hydra_command("predict", predict)


if __name__ == "__main__":
    main()
