"""A run's final model (docs/runs.md): the estimator that writes its
``submission.csv`` and that ``predict``, ``explain`` and ``moa_lit.load_run``
use. Its one rule is :func:`mean_probabilities`; cross-validation averages
its test and out-of-fold rows with it while it trains, :class:`RunModel` the
saved models when it predicts, so both agree on the same rows."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from moa_lit import schema
from moa_lit.data.reader import checked_features
from moa_lit.errors import MoAError
from moa_lit.runs import files
from moa_lit.runs.manifest import RunManifest
from moa_lit.runs.run_dir import FoldDir, RunDir
from moa_lit.training.calibration import Calibration
from moa_lit.training.fold_predictor import FoldPredictor


def mean_probabilities(total: np.ndarray, n_models: int, clip: tuple[float, float] | None, is_control) -> np.ndarray:
    """The mean of ``n_models`` models from their float64 sum ``total``, clipped, controls at exactly 0."""
    probabilities = total / n_models
    if clip is not None:
        probabilities = np.clip(probabilities, *clip)
    probabilities[np.asarray(is_control, dtype=bool)] = 0.0
    return probabilities


def final_average(final_model: str, fold_average: np.ndarray | None, refit_average: np.ndarray | None) -> np.ndarray:
    """The fold models' average, the refitted models' average, or (``both``) the mean of the two."""
    if final_model == "fold_average":
        return fold_average
    if final_model == "refit":
        return refit_average
    return (fold_average + refit_average) / 2


def output_frame(manifest: RunManifest, ids, probabilities: np.ndarray) -> pd.DataFrame:
    """sig_id + one probability column per target, in the run's submission column order."""
    frame = pd.DataFrame(probabilities, columns=manifest.target_names)
    frame.insert(0, schema.ID, np.asarray(ids))
    return frame[manifest.output_columns]


def _checked_model_dirs(folders: list[FoldDir]) -> list[FoldDir]:
    """The model folders, checked to hold both files first, so a half-copied
    run is named before anything is loaded."""
    missing = [path for d in folders for path in (d.preprocessor, d.best_checkpoint) if not path.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise MoAError(
            f"{missing[0]}: missing{more}; the run's {len(folders)} models each need "
            f"{files.PREPROCESSOR} and {files.BEST_CHECKPOINT} (was the run copied whole, "
            "and trained with callbacks.model_checkpoint on?)"
        )
    return folders


@dataclass
class RunModel:
    """A run's fitted final model: its manifest and the models it averages
    (the seed x fold models, the refitted models, or a blend's member runs
    with their weights), and the calibration their average gets
    (``calibration.json``). Built by :meth:`load` (``moa_lit.load_run``)."""

    path: Path
    manifest: RunManifest
    fold_models: list[FoldPredictor] = field(default_factory=list)
    refit_models: list[FoldPredictor] = field(default_factory=list)
    members: list[tuple["RunModel", float]] = field(default_factory=list)
    calibration: Calibration | None = None

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu", final_model: str | None = None) -> "RunModel":
        """The final model saved in the run folder ``path``, its networks on
        ``device``. ``final_model`` (fold_average, refit, both) predicts with
        other models of the run than the ones it chose (a blend's members too)."""
        run = RunDir(Path(path))
        manifest = run.manifest()
        if manifest.is_blend:
            members = []
            for member in manifest.members:
                model = cls.load(member.folder(run.path), device, final_model)
                if model.manifest.target_names != manifest.target_names:
                    raise MoAError(f"{model.path}: its targets differ from {run.path / files.RUN_MANIFEST}'s; expected the blended runs")
                members.append((model, member.weight))
            return cls(run.path, manifest, members=members)
        if final_model is not None:
            manifest = replace(manifest, final_model=final_model)
        n_targets = len(manifest.target_names)

        def load_all(folders: list[FoldDir]) -> list[FoldPredictor]:
            return [FoldPredictor.load(d, n_targets, device) for d in _checked_model_dirs(folders)]

        return cls(
            run.path,
            manifest,
            fold_models=load_all(run.folds_of(manifest)) if manifest.uses_fold_models else [],
            refit_models=load_all(run.refits_of(manifest)) if manifest.uses_refit_models else [],
            calibration=None if (raw := run.read(files.CALIBRATION, None)) is None else Calibration.from_json(raw),
        )

    @property
    def predictors(self) -> list[FoldPredictor]:
        """Every network this model averages (a blend's: none of its own)."""
        return self.fold_models + self.refit_models

    @property
    def n_models(self) -> int:
        return len(self.predictors) + sum(member.n_models for member, _ in self.members)

    def probabilities(self, features: pd.DataFrame) -> np.ndarray:
        """rows x targets (run.json's target order) for features already checked
        against the run's layout (``checked_features``)."""
        if self.members:
            return sum(weight * member.probabilities(features) for member, weight in self.members)
        is_control = (features[schema.CP_TYPE] == schema.CONTROL).to_numpy()

        def average(models: list[FoldPredictor]) -> np.ndarray | None:
            if not models:
                return None
            total = np.zeros((len(features), len(self.manifest.target_names)))
            for model in models:  # float64 sum of float32 predictions, as training sums them
                total += model.predict(features)
            return mean_probabilities(total, len(models), self.manifest.clip, is_control)

        probabilities = final_average(self.manifest.final_model, average(self.fold_models), average(self.refit_models))
        return probabilities if self.calibration is None else self.calibration.apply(probabilities, self.manifest.clip, is_control)

    def predict_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        """sig_id + one probability column per target (the run's submission
        columns and order) for each row of ``features`` (sig_id, cp_type,
        cp_time, cp_dose, g-*, c-*, as in test_features.csv; checked as
        ``predict`` checks its input file)."""
        features = checked_features(features, self.manifest.layout, role="features")
        return output_frame(self.manifest, features[schema.ID], self.probabilities(features))

