"""A run folder's file names, in one place, and atomic writes: each file
appears whole or not at all (written under a temporary name in the same
folder, then renamed), so an interrupted run leaves no truncated file."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import tempfile
import zipfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from moa_lit import fs_errors

FOLDS = "folds.csv"
OOF = "oof.csv"
SUBMISSION = "submission.csv"
SCORES = "scores.json"
CALIBRATION = "calibration.json"  # calibration.method's per-target parameters, fitted on every fold's OOF
CONFIG = ".hydra/config.yaml"  # written by train once the folder is its own (conf/hydra/default.yaml)
# The settings that fix a run's results, saved when it starts (.hydra/config.yaml
# is rewritten on every start): `resume=true` compares against this.
SETTINGS = "settings.yaml"
MODELS = "models"  # models/seed<s>/fold<k>/{preprocessor.skops,best.ckpt,...}
PREPROCESSOR = "preprocessor.skops"  # the fitted scikit-learn pipeline, skops.io (no pickle)
BEST_CHECKPOINT = "best.ckpt"
LAST_CHECKPOINT = "last.ckpt"  # the latest epoch, where an interrupted fold resumes
FOLD_INFO = "fold.json"
TRAIN_LOSSES = "train_losses.json"  # each stage's training loss, whatever the logger: the divergence check reads it
STACK_MODELS = "stack_models.pt"  # the stacked stage's inner models, beside best.ckpt
FOLD_PREDICTIONS = "predictions.npz"  # written last: it marks the fold finished
TEMPORARY_SUFFIX = ".tmp"
LOGS = "logs"  # logs/seed<s>_fold<k>/metrics.csv (CSVLogger: epoch, train_loss, val_logloss)
METRICS = "metrics.csv"
# A resumed fold's epochs from before the interruption, joined into metrics.csv when it ends.
EARLIER_METRICS = "metrics_before_resume.csv"
RUN_MANIFEST = "run.json"  # what predict needs: feature layout, targets, seeds, folds, format version
LABELS = "labels.csv"  # sig_id, cp_type and the positive targets of every training row
DATA_FINGERPRINT = "data.json"  # the data files (size, SHA-1) the run started with; resume compares it
HYDRA_OVERRIDES = ".hydra/overrides.yaml"
HYDRA_CONFIG = ".hydra/hydra.yaml"
LOCK = ".lock"  # held while a process writes the folder (runs/locks.py)
REPORT = "report"  # report/{report.md, learning_curves.png, per_target_loss.png, reliability.png}
REPORT_MD = "report.md"
LEARNING_CURVES_PNG = "learning_curves.png"
PER_TARGET_PNG = "per_target_loss.png"
RELIABILITY_PNG = "reliability.png"
MEMBERS = "members"  # an ensemble's member runs: members/<family>/
OPTIMIZATION_RESULTS = "optimization_results.yaml"  # in a search's sweep folder, as Hydra's Optuna sweeper names it


def trial_subdir(number: int) -> str:
    """Named by the Optuna trial number: resumed and parallel sweeps never reuse a folder."""
    return f"trial_{number:04d}"


_UMASK = os.umask(0)  # read the process umask (the only way is to set it) ...
os.umask(_UMASK)  # ... and put it back at once


def fold_dir(run_dir: Path, seed: int, fold: int) -> Path:
    return Path(run_dir) / MODELS / f"seed{seed}" / f"fold{fold}"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    except OSError as err:  # a read-only, full or missing folder: one line naming the file
        raise fs_errors.describe(err, path) from err
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in fs_errors.HANDLED_ERRNOS:  # a full disk: pandas' error names no file
            raise fs_errors.describe(err, path) from err
        raise


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Compressed as the final name says (``p.csv.gz``: gzip; .bz2, .xz, .zip);
    the temporary name ends in .tmp. Floats are written as float32, the
    precision of the networks' outputs, in the shortest form that reads back
    the same float32; values and names are bare unless one needs quotes.
    pyarrow writes the 24k x 206 OOF table ~10x faster than
    ``DataFrame.to_csv`` with a float format (issue 22: writing was most of a
    GPU run's 9.2 s of writing)."""
    floats = frame.select_dtypes("floating").columns
    table = pa.Table.from_pandas(frame.astype(dict.fromkeys(floats, "float32")), preserve_index=False)
    with atomic_path(path) as tmp:
        try:
            _write_table(table, tmp, Path(path).name, "none")
        except pa.ArrowInvalid:  # a value or name holds a comma, a quote or a line end
            _write_table(table, tmp, Path(path).name, "needed")


_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _write_table(table: pa.Table, tmp: Path, name: str, quoting: str) -> None:
    options = pacsv.WriteOptions(quoting_style=quoting, quoting_header=quoting)
    suffix = Path(name).suffix
    with ExitStack() as stack:
        if suffix == ".zip":
            archive = stack.enter_context(zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED))
            out = stack.enter_context(archive.open(name[: -len(suffix)], "w"))
        else:
            out = stack.enter_context(_COMPRESSED.get(suffix, open)(tmp, "wb"))
        pacsv.write_csv(table, out, options)


def write_json(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def write_bytes(data: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    # Through a file object: given a name, numpy would append ".npz" to the temporary one.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed run left behind (a SIGKILL skips ``atomic_path``'s clean-up)."""
    stale = [p for p in Path(run_dir).rglob(f".*{TEMPORARY_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
