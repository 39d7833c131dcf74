"""``python -m moa_lit.predict run_dir=... input=... [output=...] [top_k=N]``:
score new profiles with a saved training run's final model
(:class:`moa_lit.training.final_model.RunModel`, the one that wrote its
submission.csv), retraining nothing."""

from __future__ import annotations

import logging
import os
import re
import stat
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from moa_lit import schema
from moa_lit.cli import configure_threads, hydra_command
from moa_lit.data import reader
from moa_lit.errors import MoAError
from moa_lit.explain import batch as explain_command
from moa_lit.explain.batch import OUTPUTS as explain_outputs
from moa_lit.fs_errors import check_output_file
from moa_lit.runs import files
from moa_lit.runs.locks import hold_lock
from moa_lit.runs.run_dir import RunDir
from moa_lit.settings import PredictConfig, check_config
from moa_lit.training.final_model import RunModel, output_frame

log = logging.getLogger("moa_lit.predict")


def inference_device(choice: str | None = "auto") -> torch.device:
    if choice in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise MoAError("device=cuda was requested but no CUDA GPU is available; use device=cpu or device=auto")
    return torch.device(choice)


TOP_K_COLUMNS = [schema.ID, "rank", "moa", "probability"]


def top_k_table(predictions: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k most likely MoAs of each sample, most likely first; zero
    probabilities (control rows) rank nothing and are left out."""
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
    return table[table["probability"] > 0].reset_index(drop=True)[TOP_K_COLUMNS]


def _stem(path: Path) -> str:
    return re.sub(r"(\.csv)?(\.gz|\.zip)?$", "", path.name)


DATA_FILES = (schema.TRAIN_FEATURES, schema.TEST_FEATURES, schema.SAMPLE_SUBMISSION, schema.TRAIN_TARGETS_SCORED)


def check_not_in_a_run(path: Path, run: RunDir, key: str = "output") -> None:
    """Nothing predict writes (a file, or the explanations folder) lands in a
    run folder: the one it reads, or any other (a folder holding run.json)."""
    path = path.expanduser().absolute()
    where = path.parent.resolve() / path.name
    for folder in (where, *where.parents):
        if (folder / files.RUN_MANIFEST).is_file():
            which = "the run it reads" if folder == run.path.resolve() else "a run's output folder"
            raise MoAError(f"{key}={path} is inside {which} ({folder}); expected a path outside run folders")


def check_not_a_link_or_special(path: Path, key: str) -> None:
    """Never written over a link (nor through it) or a device, pipe or socket."""
    if path.is_symlink():
        raise MoAError(f"{key}={path} is a symbolic link; expected a new file or an earlier predictions file (links are not written through)")
    if os.path.lexists(path) and not stat.S_ISREG(path.stat().st_mode):
        raise MoAError(f"{key}={path} is not a regular file (a device, pipe or socket); expected a file name")


def check_replaceable(path: Path, columns: list[str], key: str = "output") -> None:
    """An existing file is replaced only when it is an earlier predictions
    file (these columns), a regular file outside a data folder."""
    if not os.path.lexists(path):
        return
    check_not_a_link_or_special(path, key)
    if any(next(path.parent.glob(f"{name}*"), None) for name in DATA_FILES):
        raise MoAError(f"{key}={path} exists in a data folder (it holds {' or '.join(DATA_FILES[:3])}); expected a path outside the data")
    try:
        found = list(pd.read_csv(path, nrows=0).columns)
    except Exception:  # binary, empty or unparsable: not a predictions file either way
        found = None
    if found != columns:
        raise MoAError(
            f"{key}={path} exists and is not a predictions file of this run (columns {', '.join(columns[:2])}, ...); "
            "expected a new file, or an earlier predictions file to replace"
        )


def check_explain_folder_apart(folder: Path, run: RunDir, reference: str | None) -> None:
    """The explanations folder is neither inside nor around the run or the
    reference data (its files would land among them)."""
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
    return path.with_name(f".{path.name}.lock")


def predict(cfg: DictConfig) -> Path:
    check_config(cfg, PredictConfig)
    run_dir, source = Path(str(cfg.run_dir)).expanduser(), Path(str(cfg.input)).expanduser()
    run = RunDir(run_dir)
    manifest = run.manifest()
    top_k = cfg.get("top_k") or 0  # a whole number >= 0 (check_config)
    if top_k > len(manifest.target_names):
        raise MoAError(f"top_k={top_k}: expected a whole number from 1 to {len(manifest.target_names)} (the number of targets)")
    output = check_output_file(str(cfg.output), "output") if cfg.get("output") else Path(f"{_stem(source)}_predictions.csv")
    if output.resolve() == source.resolve():
        raise MoAError(f"output={output} is the input file; expected another path (it would be overwritten)")
    top_path = output.with_name(f"{_stem(output)}_top{top_k}.csv") if top_k else None
    if top_path is not None and top_path.resolve() == source.resolve():
        raise MoAError(
            f"output={output} with top_k={top_k} would write the top-{top_k} table to {top_path}, the input file; "
            "expected another output name"
        )
    for path, columns in ((output, manifest.output_columns), (top_path, TOP_K_COLUMNS)):
        if path is not None:
            check_not_in_a_run(path, run)
            check_replaceable(path, columns)
    if not source.is_file():
        raise MoAError(f"input={source}: no such file; expected a features CSV in the layout of {schema.TEST_FEATURES}")
    explain_settings = explain_command.check(cfg, top_k, manifest, run_dir, output) if cfg.get("explain") else None
    if explain_settings:
        check_explain_folder_apart(explain_settings.folder, run, explain_settings.reference)
        check_not_in_a_run(explain_settings.folder, run, "explain_dir")
        for name in explain_outputs:  # the folder holds nothing else (explain_command.check)
            check_not_a_link_or_special(explain_settings.folder / name, "explain_dir")
    # Held until every output is written: a second predict writing the same
    # output (or explanations folder) gets one line naming this process.
    with hold_lock(lock_file(output), f"output={output}"), (
        hold_lock(lock_file(explain_settings.folder), f"explain_dir={explain_settings.folder}") if explain_settings else nullcontext()
    ):
        configure_threads(cfg.get("num_threads"))
        device = inference_device(cfg.get("device"))

        features = reader.read_features(source, manifest.layout, role=f"input {source}")
        if features.empty:
            raise MoAError(f"input {source}: no rows; expected at least one sample to predict")
        model = RunModel.load(run_dir, device)
        predictions = output_frame(manifest, features[schema.ID], model.probabilities(features))
        # explain=true: computed (and its inputs checked) before anything is written.
        explained = explain_command.explain(explain_settings, model, features, predictions) if explain_settings else None
        files.write_csv(predictions, output)
        written = [output]
        if top_path is not None:
            files.write_csv(top_k_table(predictions, top_k), top_path)
            written.append(top_path)
        if explained is not None:
            written += explained.write(explain_settings.folder)
        n_control = int((features[schema.CP_TYPE] == schema.CONTROL).sum())
        print(
            f"Predicted {len(features)} samples ({n_control} controls at 0) with "
            f"{model.n_models} models of {run_dir}\nOutputs: "
            + ", ".join(str(p) for p in written),
            flush=True,
        )
        return output


main = hydra_command("predict", predict)


if __name__ == "__main__":
    main()
