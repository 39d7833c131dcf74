"""One (seed, fold)'s predictor: the fitted preprocessing, the optional
stacked stage's inner models and the network at its best epoch. Training and
``predict`` both go through :meth:`FoldPredictor.predict_features`, so they
agree on the same rows.

A run folder may come from a stranger: nothing ``predict`` reads from it can
run code. The preprocessing is saved with ``skops.io`` and loaded with the
list of types a feature pipeline is made of (:data:`TRUSTED`), the networks
are tensors read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import skops.io as sio
import torch
from sklearn.pipeline import Pipeline

from moa_lit.errors import MoAError
from moa_lit.runs import files
from moa_lit.runs.run_dir import FoldDir
from moa_lit.training.checkpoint_io import read_checkpoint
from moa_lit.training.module import MoAModule


# The types of a fitted feature pipeline (training/features.py) besides
# scikit-learn's and numpy's, which skops.io trusts itself; a preprocessor file
# naming any other type is refused before any object is built.
TRUSTED = [
    "moa_lit.training.features.ControlCentring",
    "moa_lit.training.features.ProjectedPCA",
    "moa_lit.training.features.RankGauss",
    "moa_lit.training.features._to_float32",
    "moa_lit.training.features.row_statistics",
]


@dataclass
class StackedFeatures:
    """The inner models of the stacked stage; ``augment`` appends their
    averaged predictions to features of rows none of them trained on."""

    models: list[MoAModule]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The inner models' mean probability, float32 on ``x``'s device."""
        mean = torch.stack([m.probabilities(x).double() for m in self.models]).mean(dim=0)
        return mean.float().to(x.device)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.float(), self.predict(x)], dim=1)

    def save(self, fold_dir: FoldDir) -> None:
        saved = {"hparams": [dict(m.hparams) for m in self.models], "state_dicts": [m.state_dict() for m in self.models]}
        with files.atomic_path(fold_dir.stack_models) as tmp:
            torch.save(saved, tmp)

    @classmethod
    def load(cls, fold_dir: FoldDir, device: torch.device | str) -> "StackedFeatures | None":
        """The inner models saved beside a fold's best.ckpt, if any, on ``device``."""
        path = fold_dir.stack_models
        if not path.is_file():
            return None
        try:
            saved = read_checkpoint(path)
        except Exception as err:
            raise MoAError(f"{path}: cannot be loaded ({type(err).__name__}); expected the stacked models saved by training") from None
        models = []
        for hparams, state in zip(saved["hparams"], saved["state_dicts"]):
            model = MoAModule(**hparams)
            model.load_state_dict(state)
            models.append(model.eval().to(device))
        return cls(models)


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else ""


@dataclass
class FoldPredictor:
    preprocessor: Pipeline
    module: MoAModule
    stack: StackedFeatures | None = None
    where: str = "the fold"  # named in errors
    seed: int | None = None
    fold: int | None = None

    def transform(self, features: pd.DataFrame) -> torch.Tensor:
        """Raw feature rows -> the fold's preprocessed features (before stacking),
        on the network's device."""
        return torch.from_numpy(self.preprocessor.transform(features)).to(self.module.device)

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """The fold's preprocessed features -> the network's input (the stacked
        stage's predictions appended where the run has one)."""
        return self.stack.augment(x) if self.stack is not None else x

    def predict_features(self, x: torch.Tensor) -> np.ndarray:
        """Probabilities for rows given as the fold's preprocessed features."""
        x = self.network_input(x)
        if x.shape[1] != self.module.hparams.n_features:
            raise MoAError(
                f"{self.where}: the preprocessor gives {x.shape[1]} features but the checkpoint expects "
                f"{self.module.hparams.n_features}; expected files of one run"
            )
        return self.module.probabilities(x).double().cpu().numpy()

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return self.predict_features(self.transform(features))

    def save(self, fold_dir: FoldDir) -> None:
        """The preprocessing (the stacked models are saved once trained, best.ckpt by the checkpoint callback)."""
        files.write_bytes(sio.dumps(self.preprocessor), fold_dir.preprocessor)

    @classmethod
    def load(cls, fold_dir: FoldDir, n_targets: int, device: torch.device | str = "cpu") -> "FoldPredictor":
        """``device``: where the networks run; a GPU-trained run loads on a machine without one."""
        stack = StackedFeatures.load(fold_dir, device)
        return cls(
            preprocessor=_load_preprocessor(fold_dir),
            module=_load_module(fold_dir, n_targets, torch.device(device)),
            stack=stack,
            where=str(fold_dir.path),
            seed=fold_dir.seed,
            fold=fold_dir.fold,
        )


def _load_preprocessor(fold_dir: FoldDir) -> Pipeline:
    path = fold_dir.preprocessor
    try:
        return sio.load(path, trusted=TRUSTED)
    except Exception as err:  # a damaged file, other versions, or a type not in TRUSTED
        raise MoAError(
            f"{path}: cannot be loaded ({type(err).__name__}: {_first_line(err)}); "
            "expected a preprocessor saved by the same moa-lit and scikit-learn versions"
        ) from None


def _load_module(fold_dir: FoldDir, n_targets: int, device: torch.device) -> MoAModule:
    path = fold_dir.best_checkpoint
    try:
        # weights_only: tensors and plain hyperparameter dicts, no arbitrary objects unpickled.
        # map_location: a GPU-trained checkpoint loads on a machine without one.
        module = MoAModule.load_from_checkpoint(path, map_location=device, weights_only=True)
    except Exception as err:
        raise MoAError(
            f"{path}: cannot be loaded ({type(err).__name__}: {_first_line(err)}); "
            "expected a checkpoint saved by the same moa-lit version"
        ) from None
    if module.hparams.n_targets != n_targets:
        raise MoAError(
            f"{path}: the model predicts {module.hparams.n_targets} targets but run.json names {n_targets}; "
            "expected files of one run"
        )
    return module.eval()
