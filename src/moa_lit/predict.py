"""``python -m moa_lit.predict run_dir=... input=... [output=...] [top_k=N]``:
score new profiles with a saved training run, retraining nothing.

Every seed x fold model of the run is loaded (its fitted preprocessor and its
best checkpoint), the input is checked against the run's feature layout with
the same one-line errors as training, and the probabilities are averaged over
folds and seeds exactly as training averages its test predictions (so both
agree on the same file), control rows set to 0."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import hydra
import joblib
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from sklearn.pipeline import Pipeline

from moa_lit import run_files, schema
from moa_lit.config import CONFIG_DIR
from moa_lit.cv import prediction_clip
from moa_lit.data import reader
from moa_lit.errors import MoAError
from moa_lit.fs_errors import check_output_file
from moa_lit.settings_check import PREDICT as PREDICT_SETTINGS, check_settings
from moa_lit.module import MoAModule
from moa_lit.run_manifest import RunManifest, read_manifest
from moa_lit.stages import StackedFeatures, load_stack
from moa_lit.cli import configure_threads, run_and_exit_on_error

log = logging.getLogger("moa_lit.predict")

FLOAT_FORMAT = "%.7g"  # as training's submission.csv: < 5e-8 absolute rounding on [0, 1]


@dataclass
class FoldModel:
    seed: int
    fold: int
    preprocessor: Pipeline
    module: MoAModule
    folder: Path
    stack: StackedFeatures | None = None  # inner models of a stacked run


def _fold_files(run_dir: Path, manifest: RunManifest) -> list[tuple[int, int, Path]]:
    """Every fold folder the manifest promises, checked to hold both files first,
    so a half-copied run is named before anything is loaded."""
    folders = [(s, k, run_files.fold_dir(run_dir, s, k)) for s in manifest.seeds for k in manifest.folds]
    missing = [
        folder / name
        for _, _, folder in folders
        for name in (run_files.PREPROCESSOR, run_files.BEST_CHECKPOINT)
        if not (folder / name).is_file()
    ]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise MoAError(
            f"{missing[0]}: missing{more}; the run's {len(folders)} seed x fold models each need "
            f"{run_files.PREPROCESSOR} and {run_files.BEST_CHECKPOINT} (was the run copied whole, "
            "and trained with callbacks.model_checkpoint on?)"
        )
    return folders


def _load_preprocessor(path: Path) -> Pipeline:
    try:
        return joblib.load(path)
    except Exception as err:  # unpickling fails in many ways; all mean the same to a user
        raise MoAError(
            f"{path}: cannot be loaded ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "expected a preprocessor saved by the same moa-lit and scikit-learn versions"
        ) from None


def _load_module(path: Path, n_targets: int, device: torch.device) -> MoAModule:
    try:
        # weights_only: tensors and plain hyperparameter dicts, no arbitrary objects unpickled.
        # map_location: a GPU-trained checkpoint loads on a machine without one.
        module = MoAModule.load_from_checkpoint(path, map_location=device, weights_only=True)
    except Exception as err:
        raise MoAError(
            f"{path}: cannot be loaded ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "expected a checkpoint saved by the same moa-lit version"
        ) from None
    if module.hparams.n_targets != n_targets:
        raise MoAError(
            f"{path}: the model predicts {module.hparams.n_targets} targets but run.json names {n_targets}; "
            "expected files of one run"
        )
    return module.eval()


def inference_device(choice: str | None = "auto") -> torch.device:
    """``device=auto`` predicts on the GPU when there is one, else on the CPU."""
    choice = "auto" if choice is None else str(choice)
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice not in ("cpu", "cuda"):
        raise MoAError(f"device={choice}: expected auto, cpu or cuda")
    if choice == "cuda" and not torch.cuda.is_available():
        raise MoAError("device=cuda was requested but no CUDA GPU is available; use device=cpu or device=auto")
    return torch.device(choice)


def load_fold_models(run_dir: Path, manifest: RunManifest, device: torch.device | str = "cpu") -> list[FoldModel]:
    device = torch.device(device)

    def stack_on(folder: Path) -> StackedFeatures | None:
        stack = load_stack(folder)
        if stack is not None:
            stack.models = [m.to(device) for m in stack.models]
        return stack

    return [
        FoldModel(
            seed,
            fold,
            _load_preprocessor(folder / run_files.PREPROCESSOR),
            _load_module(folder / run_files.BEST_CHECKPOINT, len(manifest.target_names), device),
            folder,
            stack_on(folder),
        )
        for seed, fold, folder in _fold_files(run_dir, manifest)
    ]


def ensemble_probabilities(
    models: list[FoldModel], features: pd.DataFrame, clip: tuple[float, float] | None = None
) -> np.ndarray:
    """Mean over seeds and folds, summed in training's order (seed, then fold)
    and in float64, so the result matches training's test predictions."""
    total = None
    for m in models:
        x = torch.from_numpy(m.preprocessor.transform(features)).to(m.module.device)
        if m.stack is not None:
            x = m.stack.augment(x)
        if x.shape[1] != m.module.hparams.n_features:
            raise MoAError(
                f"{m.folder}: the preprocessor gives {x.shape[1]} features but the checkpoint expects "
                f"{m.module.hparams.n_features}; expected files of one run"
            )
        pred = m.module.predict_proba(x).numpy()
        total = pred if total is None else total + pred
    probabilities = total / len(models)
    if clip is not None:
        probabilities = np.clip(probabilities, *clip)
    probabilities[(features[schema.CP_TYPE] == schema.CONTROL).to_numpy()] = 0.0  # no MoA by definition
    return probabilities


def _run_clip(run_dir: Path) -> tuple[float, float] | None:
    """The run's ``predict.clip``, from the settings it was trained with."""
    settings = run_dir / run_files.SETTINGS
    if not settings.is_file():
        return None
    return prediction_clip(OmegaConf.load(settings))


def predict_frame(
    run_dir: Path, features: pd.DataFrame, manifest: RunManifest | None = None, device: torch.device | str = "cpu"
) -> pd.DataFrame:
    """sig_id + one probability column per target, in the run's submission column order."""
    manifest = manifest or read_manifest(run_dir)
    models = load_fold_models(Path(run_dir), manifest, device)
    frame = pd.DataFrame(
        ensemble_probabilities(models, features, clip=_run_clip(Path(run_dir))), columns=manifest.target_names
    )
    frame.insert(0, schema.ID, features[schema.ID].to_numpy())
    return frame[manifest.output_columns]


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


def predict(cfg: DictConfig) -> Path:
    run_dir = Path(_required(cfg, "run_dir")).expanduser()
    source = Path(_required(cfg, "input")).expanduser()
    check_settings(cfg, PREDICT_SETTINGS)
    manifest = read_manifest(run_dir)
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
    if not source.is_file():
        raise MoAError(f"input={source}: no such file; expected a features CSV in the layout of {schema.TEST_FEATURES}")
    configure_threads(cfg.get("num_threads"))
    device = inference_device(cfg.get("device"))

    features = reader.read_features(source, manifest.layout, role=f"input {source}")
    if features.empty:
        raise MoAError(f"input {source}: no rows; expected at least one sample to predict")
    predictions = predict_frame(run_dir, features, manifest, device)
    run_files.write_csv(predictions, output, float_format=FLOAT_FORMAT)
    written = [output]
    if top_path is not None:
        run_files.write_csv(top_k_table(predictions, top_k), top_path, float_format=FLOAT_FORMAT)
        written.append(top_path)
    n_control = int((features[schema.CP_TYPE] == schema.CONTROL).sum())
    print(
        f"Predicted {len(features)} samples ({n_control} controls at 0) with "
        f"{len(manifest.seeds) * len(manifest.folds)} models of {run_dir}\nOutputs: "
        + ", ".join(str(p) for p in written),
        flush=True,
    )
    return output


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    run_and_exit_on_error(predict, cfg)


if __name__ == "__main__":
    main()
