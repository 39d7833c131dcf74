"""A run folder, the one place that opens its files: commands read and write
runs through :class:`RunDir` and :class:`FoldDir` (file names in
:mod:`moa_lit.runs.files`, every write atomic). What a run holds, the rule for
writing and resume: docs/runs.md."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from moa_lit import schema
from moa_lit.errors import MoAError
from moa_lit.runs import files
from moa_lit.runs.locks import hold_lock
from moa_lit.runs.manifest import RunManifest, check_format_version, parse_manifest, started_marker
from moa_lit.runs.tables import read_run_csv

log = logging.getLogger(__name__)

POSITIVES = "positives"

# Settings that do not change the predictions of a (seed, fold), so they may
# differ between the interrupted run and its resumption (a key and all below it).
MAY_CHANGE_ON_RESUME = (
    "resume",
    "allow_worse_than_prior",  # what is done with the result, not the result
    "seeds",  # finished seeds are reused, new ones are trained
    "cv.folds",
    "num_threads",
    "paths",
    "logger",
    "callbacks.progress_bar",
    "data.use_cache",
    "loader.eval_batch_size",  # prediction batch size: the same probabilities up to rounding
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "optimized_metric",
)


def _made_for_this_job(folder: Path) -> set[str]:
    """What no earlier command put there: the lock, and in Hydra's folder for
    this job its log file (opened by the first log line) and ``output_subdir``."""
    names = {files.LOCK}
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and Path(HydraConfig.get().runtime.output_dir).resolve() == folder.resolve():
        hydra = HydraConfig.get()
        names |= {f"{hydra.job.name}.log", *([hydra.output_subdir] if hydra.output_subdir else [])}
    return names


class InvalidPredictionsError(MoAError):
    """Predictions that are not finite probabilities: nothing is written."""


def check_probabilities(values: np.ndarray, what: str) -> None:
    """Refuse NaN, infinite or out-of-[0, 1] predictions with one line saying where."""
    values = np.asarray(values)
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InvalidPredictionsError(
            f"{what}: {int(bad.sum())} predictions are not finite probabilities in [0, 1] "
            f"(first: row {row}, target {col}, value {values[row, col]}); nothing was written. "
            "The model diverged: lower model.optimizer.lr / model.scheduler.max_lr, "
            "or check the features for NaN/inf values"
        )


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; an empty dict stays a value."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def changed_settings(saved: dict, current: dict, ignore=MAY_CHANGE_ON_RESUME) -> list[str]:
    """``key: saved -> current`` for each setting outside ``ignore`` that differs."""
    old, new = flatten(saved), flatten(current)
    missing = object()
    return [
        f"{key}: {old.get(key, '(unset)')} -> {new.get(key, '(unset)')}"
        for key in sorted(set(old) | set(new))
        if not any(key == k or key.startswith(k + ".") for k in ignore) and old.get(key, missing) != new.get(key, missing)
    ]


def changed_data_files(saved: dict, current: dict) -> list[str]:
    """The data files whose content hash (or presence) differs between two fingerprints."""
    names = sorted(k for k in set(saved) | set(current) if isinstance(saved.get(k, current.get(k)), dict))
    changed = []
    for name in names:
        old, new = saved.get(name), current.get(name)
        if (old is None) != (new is None):
            changed.append(f"{name} ({'added' if old is None else 'removed'})")
        elif old is not None and old.get("sha1") != new.get("sha1"):
            changed.append(f"{name} (SHA-1 {str(old.get('sha1'))[:12]} -> {str(new.get('sha1'))[:12]}, {new.get('path')})")
    return changed


def _meets(out: Path, other: Path) -> str | None:
    """How folder ``out`` meets folder ``other`` (both resolved): is it, lies inside it, holds it; None: apart."""
    return "is" if out == other else "lies inside" if other in out.parents else "holds" if out in other.parents else None


def check_apart_from_data(run_dir: str | Path, data_dir: str | Path | None, key: str = "hydra.run.dir") -> None:
    """Outputs are never written among their inputs."""
    how = data_dir and _meets(Path(run_dir).expanduser().resolve(), Path(data_dir).expanduser().resolve())
    if how:
        raise MoAError(
            f"{key}={run_dir} {how} the data folder data.dir={data_dir}; expected a run folder apart from the data "
            "(outputs must not be written among their inputs)"
        )


def labels_table(ids, cp_type, targets: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Each row's sig_id, cp_type and positive targets as a JSON list of names
    (a hundred times smaller than the 0/1 matrix; any character of a name survives)."""
    names = np.asarray(names, dtype=object)
    positives = [json.dumps(list(names[row > 0.5]), ensure_ascii=False) for row in np.asarray(targets)]
    return pd.DataFrame({schema.ID: np.asarray(ids), schema.CP_TYPE: np.asarray(cp_type), POSITIVES: positives})


@dataclass
class FoldPredictions:
    val_rows: np.ndarray  # row numbers of the fold's treated validation rows
    oof: np.ndarray  # val_rows x targets
    test: np.ndarray | None  # test rows x targets, or None without a test file


@dataclass
class Labels:
    """The training rows' 0/1 targets (rows in ``labels.csv`` order)."""

    ids: np.ndarray
    targets: np.ndarray  # rows x targets, float64
    is_control: np.ndarray

    def rows_of(self, ids, path: Path) -> np.ndarray:
        """Positions of ``ids`` among the labelled rows."""
        rows = pd.Index(self.ids).get_indexer(ids)
        if (rows < 0).any():
            raise MoAError(f"{path}: no row for sig_id {np.asarray(ids)[rows < 0][0]}; expected files of one run")
        return rows


class FoldDir:
    """``models/seed<s>/fold<k>/``: one fold's fitted preprocessing, stacked
    models, checkpoints, summary and predictions; with no fold,
    ``models/refit/seed<s>/``, a final model trained on every training row
    (its predictions hold the test rows only)."""

    def __init__(self, path: Path, seed: int | None = None, fold: int | None = None) -> None:
        self.path = Path(path)
        self.seed, self.fold = seed, fold
        self.label = f"seed {seed} fold {fold}" if fold is not None else f"seed {seed} refit on all rows"

    preprocessor = property(lambda self: self.path / files.PREPROCESSOR)
    best_checkpoint = property(lambda self: self.path / files.BEST_CHECKPOINT)
    last_checkpoint = property(lambda self: self.path / files.LAST_CHECKPOINT)
    stack_models = property(lambda self: self.path / files.STACK_MODELS)
    info_file = property(lambda self: self.path / files.FOLD_INFO)
    train_losses_file = property(lambda self: self.path / files.TRAIN_LOSSES)
    predictions_file = property(lambda self: self.path / files.FOLD_PREDICTIONS)

    def finished(self) -> bool:
        return self.predictions_file.is_file()

    def resume_checkpoint(self) -> Path | None:
        """The checkpoint an interrupted fold goes on from, if any."""
        return self.last_checkpoint if self.last_checkpoint.is_file() else None

    def record_train_losses(self, stage: str, losses: dict) -> None:
        """Kept as soon as the stage has trained: a resumed fold does not train it again."""
        recorded = self.train_losses()
        recorded[stage] = losses
        files.write_json(recorded, self.train_losses_file)

    def train_losses(self) -> dict[str, dict]:
        return files.read_json(self.train_losses_file) if self.train_losses_file.is_file() else {}

    def write_info(self, info: dict) -> None:
        files.write_json(info, self.info_file)

    def read_info(self) -> dict:
        return files.read_json(self.info_file)

    def summary(self) -> dict:
        """The line of scores.json's fold_summaries for a finished fold."""
        info = self.read_info()
        return {
            "seed": info["seed"],
            "fold": info["fold"],
            "best_epoch": info["best_epoch"],
            "val_logloss": info["best_val_logloss"],
            "seconds": info.get("seconds"),
            "peak_gpu_memory_mb": info.get("peak_gpu_memory_mb"),
        }

    def save_predictions(self, preds: FoldPredictions) -> None:
        """Checked, then written last: its presence marks the fold finished."""
        check_probabilities(preds.oof, f"{self.label} out-of-fold predictions")
        arrays = {"val_rows": preds.val_rows, "oof": preds.oof.astype(np.float32)}
        if preds.test is not None:
            check_probabilities(preds.test, f"{self.label} test predictions")
            arrays["test"] = preds.test.astype(np.float32)
        # float32 loses nothing: the module computes float32 sigmoids.
        files.write_npz(self.predictions_file, **arrays)

    def load_predictions(self, expected_val_rows: np.ndarray, n_test: int | None, n_targets: int) -> FoldPredictions:
        """A finished fold's predictions, checked against this run's folds and test file."""
        path = self.predictions_file
        with np.load(path) as saved:
            val_rows = saved["val_rows"]
            oof = saved["oof"].astype(np.float64)
            test = saved["test"].astype(np.float64) if "test" in saved.files else None
        if not np.array_equal(val_rows, expected_val_rows) or oof.shape != (len(expected_val_rows), n_targets):
            raise MoAError(
                f"{path}: {self.label} was saved for other validation rows or targets than this run's; "
                "resume=true needs the same data and cv settings (or start a new run)"
            )
        if (test is None) != (n_test is None) or (test is not None and test.shape != (n_test, n_targets)):
            raise MoAError(
                f"{path}: {self.label} was saved for another test file than this run's; "
                "resume=true needs the same data (or start a new run)"
            )
        return FoldPredictions(val_rows=val_rows, oof=oof, test=test)

    def drop_last_checkpoint(self) -> None:
        # Only an unfinished fold needs it; best.ckpt stays for prediction.
        self.last_checkpoint.unlink(missing_ok=True)


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    # -- layout -------------------------------------------------------------
    def fold(self, seed: int, fold: int) -> FoldDir:
        return FoldDir(files.fold_dir(self.path, seed, fold), seed, fold)

    def folds_of(self, manifest: RunManifest) -> list[FoldDir]:
        return [self.fold(s, k) for s in manifest.seeds for k in manifest.folds]

    def refit(self, seed: int) -> FoldDir:
        return FoldDir(self.path / files.MODELS / "refit" / f"seed{seed}", seed)

    def refits_of(self, manifest: RunManifest) -> list[FoldDir]:
        return [self.refit(s) for s in manifest.refit_seeds]

    def member(self, name: str) -> "RunDir":
        """An ensemble's member run, ``members/<name>/``."""
        return RunDir(self.path / files.MEMBERS / name)

    @property
    def logs(self) -> Path:
        return self.path / files.LOGS

    def log_version(self, seed: int, fold: int) -> str:
        return f"seed{seed}_fold{fold}"

    def metrics_file(self, seed: int, fold: int) -> Path:
        return self.logs / self.log_version(seed, fold) / files.METRICS

    def earlier_metrics_file(self, seed: int, fold: int) -> Path:
        return self.logs / self.log_version(seed, fold) / files.EARLIER_METRICS

    def model_files(self) -> list[Path]:
        """Every file under ``models/``, sorted (what the fold predictors are loaded from)."""
        return sorted(p for p in (self.path / files.MODELS).rglob("*") if p.is_file())

    def need(self, name: str, what: str = "every finished training run") -> Path:
        path = self.path / name
        if not path.is_file():
            raise MoAError(f"{path}: {name} not found; expected it in {what}")
        return path

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def read(self, name: str, what: str | None = "every finished training run") -> Any:
        """A run file by its kind: a CSV table (:func:`read_run_csv`), JSON, or
        YAML unresolved; a missing one is None when ``what`` is None, else a
        one-line MoAError expecting it in ``what``."""
        if what is None and not self.has(name):
            return None
        path = self.need(name, what)
        if name.endswith(".csv"):
            return read_run_csv(path)
        if name.endswith(".json"):
            return files.read_json(path)
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)

    # -- the one rule for writing ---------------------------------------------
    def check_may_write(self, key: str, resume: bool | None = None) -> bool:
        """Whether the folder holds a run to continue (``resume=true`` and its
        ``run.json``), False when new or empty, else a one-line MoAError.
        ``resume``: None for a command that cannot continue a run (merge, blend)."""
        theirs = sorted(p.name for p in self.path.iterdir() if p.name not in _made_for_this_job(self.path)) if self.path.is_dir() else []
        if not theirs:
            return False
        marker = self.path / files.RUN_MANIFEST
        if not marker.is_file():
            raise MoAError(
                f"{key}={self.path} holds files moa-lit did not write there ({', '.join(theirs[:3])}"
                f"{', ...' if len(theirs) > 3 else ''}) and no {files.RUN_MANIFEST}; expected a new or empty folder"
            )
        check_format_version(marker)
        if not resume:
            hint = "add resume=true to continue it, or " if resume is not None else ""
            raise MoAError(f"{key}={self.path} already holds a run; {hint}delete it first, or choose a new {key}")
        return True

    def check_apart_from(self, inputs: list[Path], key: str) -> None:
        """Never one of the runs a command reads, inside one or around one."""
        for source in inputs:
            if _meets(self.path.resolve(), Path(source).resolve()):
                raise MoAError(
                    f"{key}={self.path} is or holds {Path(source).resolve()}, one of the runs this command reads; "
                    f"expected a new {key} (it would be overwritten)"
                )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Held while this process writes the folder (:func:`locks.hold_lock`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with hold_lock(self.path / files.LOCK, str(self.path)):
            yield

    @contextmanager
    def claimed(self, key: str, resume: bool | None = None) -> Iterator[bool]:
        """The folder, locked and checked (:meth:`check_may_write`), with its
        marker written first; yields whether a run there is continued."""
        if self.path.exists() and not self.path.is_dir():
            raise MoAError(f"{key}={self.path} is a file; expected a folder")
        with self.lock():
            resuming = self.check_may_write(key, resume)
            if not resuming:
                files.write_json(started_marker(), self.path / files.RUN_MANIFEST)
            yield resuming

    def start(self, settings: dict, resuming: bool) -> None:
        """Record the settings of a new run, or check that a continued run
        (``resume=true``) was started with these settings."""
        settings_path = self.path / files.SETTINGS
        if not resuming:
            self.write_yaml(files.SETTINGS, settings)
            log.info("if this run is interrupted, continue it with the same command plus: resume=true hydra.run.dir=%s", self.path)
            return
        if not settings_path.is_file():
            raise MoAError(
                f"resume=true: {self.path} holds no {files.SETTINGS}, so it cannot be checked that its outputs "
                "were made with these settings; start a new run"
            )
        changed = changed_settings(self.read(files.SETTINGS), settings)
        if changed:
            shown = "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise MoAError(
                f"resume=true: {self.path} was run with other settings ({shown}); resume with the settings "
                f"in {settings_path}, or start a new run without resume=true"
            )
        stale = files.remove_temporaries(self.path)
        log.info("resume=true: continuing %s (%d temporary files of the interrupted run removed)", self.path, len(stale))

    def record_data(self, fingerprint: dict, resuming: bool) -> None:
        """Write the data fingerprint when a run starts; on resume, refuse changed data files."""
        path = self.path / files.DATA_FINGERPRINT
        if resuming:
            if not path.is_file():
                raise MoAError(
                    f"resume=true: {path} is missing, so it cannot be checked that the data is the data the run "
                    "started with; start a new run"
                )
            changed = changed_data_files(files.read_json(path), fingerprint)
            if changed:
                raise MoAError(
                    f"resume=true: the data changed since {self.path} started: {'; '.join(changed)}; "
                    "resume with the data the run started with, or start a new run"
                )
            return
        files.write_json(fingerprint, path)

    def check_resume_keeps_outputs(self, seeds: list[int], fold_ids: list[int]) -> None:
        """A finished run resumed with fewer seeds or folds would have its
        oof.csv, submission.csv and scores replaced by those of the subset."""
        finished = self.read(files.SCORES, None)
        if finished is None:
            return
        dropped_folds = sorted(set(finished.get("folds") or []) - set(fold_ids))
        dropped_seeds = sorted(set(finished.get("seeds") or []) - set(seeds))
        if dropped_folds or dropped_seeds:
            what = f"folds {dropped_folds}" if dropped_folds else f"seeds {dropped_seeds}"
            raise MoAError(
                f"resume=true: {self.path} holds a finished run over folds {finished.get('folds')} and seeds "
                f"{finished.get('seeds')}; resuming without {what} would replace its oof.csv and submission.csv "
                "with the rest alone; resume with all of them (cv.folds=null), or start a new run"
            )

    def check_same_folds(self, fold_table: pd.DataFrame) -> None:
        """A resumed run must split the same rows into the same folds as before."""
        saved = self.read(files.FOLDS, None)
        if saved is not None and not saved.astype(str).equals(fold_table.astype(str)):
            raise MoAError(
                f"resume=true: the data's rows or fold assignment differ from {self.path / files.FOLDS}; "
                "the data changed since the run started: start a new run"
            )

    # -- settings and config ------------------------------------------------
    def write_yaml(self, name: str, tree: dict) -> None:
        files.write_text(OmegaConf.to_yaml(OmegaConf.create(tree)), self.path / name)

    def write_hydra_record(self, cfg) -> None:
        """What Hydra itself would write into ``.hydra/``, written once the run owns the folder."""
        from hydra.core.hydra_config import HydraConfig

        files.write_text(OmegaConf.to_yaml(cfg), self.path / files.CONFIG)
        if HydraConfig.initialized():
            hydra_cfg = HydraConfig.get()
            files.write_text(OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})), self.path / files.HYDRA_CONFIG)
            files.write_text(OmegaConf.to_yaml(hydra_cfg.overrides.task), self.path / files.HYDRA_OVERRIDES)

    def text(self, name: str) -> str | None:
        path = self.path / name
        return path.read_text() if path.is_file() else None

    # -- whole-run tables ---------------------------------------------------
    def write_manifest(self, manifest: RunManifest) -> None:
        files.write_json(asdict(manifest), self.path / files.RUN_MANIFEST)

    def manifest(self) -> RunManifest:
        """The run's manifest, or a one-line MoAError saying what is wrong with the folder."""
        if not self.path.is_dir():
            raise MoAError(f"run_dir={self.path}: no such folder; expected a training run's output folder")
        return parse_manifest(self.path / files.RUN_MANIFEST)

    def write_folds(self, table: pd.DataFrame) -> None:
        files.write_csv(table, self.path / files.FOLDS)

    def write_labels(self, table: pd.DataFrame) -> None:
        files.write_csv(table, self.path / files.LABELS)

    def labels(self, names: list[str]) -> Labels:
        """Every training row's 0/1 targets in ``names`` order, read from the run."""
        path = self.need(files.LABELS)
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        column = {name: j for j, name in enumerate(names)}
        targets = np.zeros((len(table), len(names)), dtype=np.float64)
        for i, text in enumerate(table[POSITIVES].to_numpy()):
            try:
                positives = json.loads(text)
            except ValueError:
                positives = None
            if not isinstance(positives, list):
                raise MoAError(f"{path}: row {i + 1} has positives {text[:40]!r}; expected a JSON list of target names")
            for name in positives:
                if not isinstance(name, str) or name not in column:
                    raise MoAError(f"{path}: target {name!r} is not one of the run's targets; expected files of one run")
                targets[i, column[name]] = 1.0
        return Labels(
            ids=table[schema.ID].to_numpy(),
            targets=targets,
            is_control=(table[schema.CP_TYPE] == schema.CONTROL).to_numpy(),
        )

    def write_predictions(self, oof: pd.DataFrame, submission: pd.DataFrame | None) -> None:
        """``oof.csv`` and ``submission.csv``, both checked before either is written."""
        check_probabilities(oof.drop(columns=schema.ID).to_numpy(), "out-of-fold predictions")
        if submission is not None:
            check_probabilities(submission.drop(columns=schema.ID).to_numpy(), "test predictions")
        files.write_csv(oof, self.path / files.OOF)
        if submission is not None:
            files.write_csv(submission, self.path / files.SUBMISSION)

    def write_scores(self, scores: dict) -> None:
        files.write_json(scores, self.path / files.SCORES)

    def write_json(self, name: str, obj: Any) -> None:
        files.write_json(obj, self.path / name)

    # -- learning curves ----------------------------------------------------
    def keep_earlier_epochs(self, seed: int, fold: int, last_epoch: int) -> None:
        """Before a fold resumes after ``last_epoch``: Lightning's CSV logger starts
        ``metrics.csv`` again, so the epochs up to the checkpoint's are kept aside."""
        frames = [pd.read_csv(p) for p in (self.earlier_metrics_file(seed, fold), self.metrics_file(seed, fold)) if p.is_file()]
        frames = [f for f in frames if len(f) and "epoch" in f.columns]
        if not frames:
            return
        earlier = pd.concat(frames, ignore_index=True)
        files.write_csv(earlier[earlier["epoch"] <= last_epoch], self.earlier_metrics_file(seed, fold))

    def join_earlier_epochs(self, seed: int, fold: int) -> None:
        """When the fold ends: one ``metrics.csv`` with every epoch."""
        earlier_path, metrics_path = self.earlier_metrics_file(seed, fold), self.metrics_file(seed, fold)
        if not earlier_path.is_file():
            return
        earlier = pd.read_csv(earlier_path)
        later = pd.read_csv(metrics_path) if metrics_path.is_file() else earlier.iloc[:0]
        if len(later):
            earlier = earlier[earlier["epoch"] < later["epoch"].min()]
        files.write_csv(pd.concat([earlier, later], ignore_index=True), metrics_path)
        earlier_path.unlink()

    def epoch_train_losses(self, seed: int, fold: int) -> pd.Series:
        """Mean training loss per epoch of a fold (empty without logs)."""
        path = self.metrics_file(seed, fold)
        if not path.is_file():
            return pd.Series(dtype=float)
        frame = pd.read_csv(path)
        if "train_loss" not in frame or "epoch" not in frame:
            return pd.Series(dtype=float)
        return frame.dropna(subset=["train_loss"]).groupby("epoch")["train_loss"].last().sort_index()

    def curve(self, seed: int, fold: int) -> pd.DataFrame | None:
        """Per-epoch train loss and validation log loss of a fold (None without logs)."""
        path = self.metrics_file(seed, fold)
        if not path.is_file():
            return None
        # CSVLogger writes train and validation values of an epoch on separate rows.
        return pd.read_csv(path).groupby("epoch")[["train_loss", "val_logloss"]].first()
