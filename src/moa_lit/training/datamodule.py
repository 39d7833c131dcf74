"""The LightningDataModule: one fold at a time, batches sliced from in-memory
tensors by index (no per-row Dataset + collate, which is many times slower for
a tabular MLP)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.pipeline import Pipeline

from moa_lit import schema
from moa_lit.errors import MoAError
from moa_lit.scoring.scores import choosing_rows
from moa_lit.training.features import build_feature_pipeline, fit_transform_features, meta_cells


log = logging.getLogger(__name__)

# The random state of the feature pipeline's randomised steps (the quantile
# transform's subsample, PCA's randomized solver, factor analysis): one fixed
# value, so a fold's features are fitted once and shared by every training
# seed. 0 is the seed the default run (seeds=[0]) always used.
FEATURE_SEED = 0


def epoch_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from small integers (seed, fold, epoch, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class ControlAugmentation:
    """Training rows as x + (ctl_a - ctl_b) (``loader.control_augmentation``):
    with probability ``p`` a row gets the difference of two random training
    control rows of its cp_time and cp_dose, drawn afresh each epoch. Added in
    the features the network sees (after rank-Gauss: the raw values would need
    the transform per batch), the whole vector, so a row's PCA/FA components
    move with its values and the one-hot meta columns do not move; columns past
    the preprocessor's (stacked predictions) are left alone. A cell without
    training controls draws from all of them."""

    def __init__(self, p: float, controls: torch.Tensor):
        self.p, self.width = float(p), controls.shape[1]
        cells = meta_cells(controls, self.width).cpu()
        order = torch.argsort(cells, stable=True)
        self.controls = controls[order.to(controls.device)]  # grouped by cell
        count = torch.bincount(cells, minlength=len(schema.CP_TIMES) * len(schema.CP_DOSES))
        empty = count == 0
        self.start = torch.where(empty, 0, torch.cumsum(count, 0) - count)
        self.count = torch.where(empty, len(controls), count)

    def draw(self, x: torch.Tensor, generator: torch.Generator):
        """One epoch's draws for every row of ``x`` from ``generator`` (on the
        CPU: the same draws on any device); returns ``augment(x[idx], idx)``."""
        cells = meta_cells(x, self.width).cpu()
        u = torch.rand((3, len(x)), generator=generator, dtype=torch.float64)
        start, count = self.start[cells], self.count[cells]
        chosen, a, b = (t.to(x.device) for t in (u[0] < self.p, start + (u[1] * count).long(), start + (u[2] * count).long()))
        width = self.width

        def augment(batch: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            shift = self.controls[a[idx]] - self.controls[b[idx]]
            batch[:, :width] = torch.where(chosen[idx, None], batch[:, :width] + shift, batch[:, :width])
            return batch

        return augment


class TensorBatches:
    """An iterable of (x, y) mini-batches over tensors. A final batch of a single
    row is dropped in training: batch norm cannot normalise one sample.

    With ``shuffle`` each epoch's order is a function of (seed, epoch) only, so
    a fold resumed from a checkpoint at epoch e sees the same batches as an
    uninterrupted run: Lightning calls ``sampler.set_epoch(epoch)`` at the start
    of every training epoch (as for a DistributedSampler), also the first epoch
    after a resume; used outside Lightning, each pass moves on by itself.
    ``augment``: a shuffled pass's rows are augmented by it, with the same generator."""

    def __init__(self, x, y, batch_size: int, shuffle: bool, seed: int = 0, drop_singleton: bool = True,
                 augment: ControlAugmentation | None = None):
        self.x, self.y, self.augment = x, y, augment
        self.batch_size = batch_size
        self.drop_singleton = drop_singleton
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.batch_sampler = None  # named like a DataLoader's, as is sampler: Lightning reads both

    @property
    def sampler(self) -> "TensorBatches | None":
        return self if self.shuffle else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (1 if rest > 1 or (rest == 1 and not self.drop_singleton) else 0)

    def __iter__(self):
        order = augment = None
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            self.epoch += 1
            order = torch.randperm(len(self.x), generator=generator).to(self.x.device)
            if self.augment is not None:
                augment = self.augment.draw(self.x, generator)
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if order is None:
                yield self.x[sl], self.y[sl]
            else:
                idx = order[sl]
                x = self.x[idx]  # a copy: augment may write into it
                yield (x if augment is None else augment(x, idx)), self.y[idx]


@dataclass
class FoldTensors:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    val_choosing: torch.Tensor  # positions among the validation rows of those that choose the best epoch


# The fold number of a model trained on every treated row (it seeds the
# shuffle: seed * 1000 + fold, so non-negative and beyond any real fold).
ALL_ROWS = 999


class MoADataModule(L.LightningDataModule):
    """Per-fold splits of a dataset: ``set_fold(k)`` fits the feature pipeline on
    fold k's training rows (treated rows only: controls have no MoA by
    definition and are predicted 0) and serves its train/validation batches.
    ``set_fold(k, seed)`` again for another seed reuses the fitted features.
    ``inputs`` are the fold's training and validation features as the scored
    model sees them: a stacked fold appends its columns there.
    ``control_augmentation``: the probability a training row is augmented
    (:class:`ControlAugmentation`); the fold's training controls fit it and
    the control centring (``features.control_centring``)."""

    def __init__(
        self,
        features: pd.DataFrame,
        targets: np.ndarray,
        folds: np.ndarray,
        is_control: np.ndarray,
        genes: list[str],
        cells: list[str],
        feature_params: dict,
        batch_size: int = 128,
        eval_batch_size: int = 8192,
        device: str | torch.device = "cpu",
        new_drugs: np.ndarray | None = None,
        control_augmentation: float = 0.0,
    ) -> None:
        super().__init__()
        self.features = features
        self.targets = np.asarray(targets, dtype=np.float32)
        self.folds = np.asarray(folds)
        self.is_control = np.asarray(is_control, dtype=bool)
        self.genes, self.cells = genes, cells
        self.feature_params = dict(feature_params)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.device = torch.device(device)
        # The rows whose validation loss chooses the best epoch: new-drug rows
        # (scoring.scores.new_drug_rows), else treated rows.
        self.choosing = choosing_rows(new_drugs, self.is_control)
        self.fold: int | None = None
        self.seed = 0
        self.preprocessor: Pipeline | None = None
        self.tensors: FoldTensors | None = None
        self.inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.control_augmentation = float(control_augmentation)
        self.augmentation: ControlAugmentation | None = None

    def train_rows(self, fold: int) -> np.ndarray:
        return np.flatnonzero((self.folds != fold) & ~self.is_control)

    def val_rows(self, fold: int) -> np.ndarray:
        """The fold's treated rows: controls are predicted 0, not by the model."""
        return np.flatnonzero((self.folds == fold) & ~self.is_control)

    def tensor(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if self.device.type == "cuda":
            # Kept on the device for the whole fold: no host->device copy per batch.
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def set_fold(self, fold: int, seed: int = 0) -> "MoADataModule":
        controls = np.flatnonzero((self.folds != fold) & self.is_control)
        return self._fit_rows(self.train_rows(fold), self.val_rows(fold), controls, fold, f"fold {fold}", seed)

    def set_all_rows(self, seed: int = 0) -> "MoADataModule":
        """Every treated row for training and none for validation: the data of
        a final model refitted after cross-validation (``training/refit.py``)."""
        rows = np.flatnonzero(~self.is_control)
        return self._fit_rows(rows, rows[:0], np.flatnonzero(self.is_control), ALL_ROWS, "the data", seed)

    def _fit_rows(
        self, train_idx: np.ndarray, val_idx: np.ndarray, control_idx: np.ndarray, fold: int, what: str, seed: int
    ) -> "MoADataModule":
        if len(train_idx) < 2:
            raise MoAError(f"{what} has {len(train_idx)} treated training rows; expected at least 2")
        if self.batch_size > len(train_idx):
            raise MoAError(
                f"loader.batch_size={self.batch_size} is larger than {what}'s "
                f"{len(train_idx)} training rows; lower loader.batch_size"
            )
        if fold == self.fold and self.tensors is not None:
            # Another seed of the same fold: the fitted features do not depend
            # on the training seed, so they are reused, not fitted again.
            self.seed = seed
            self.inputs = (self.tensors.x_train, self.tensors.x_val)
            return self
        uses_controls = [key for key, on in (
            ("features.control_centring", self.feature_params.get("control_centring", False)),
            ("loader.control_augmentation", self.control_augmentation > 0),
        ) if on]
        if uses_controls and not len(control_idx):
            raise MoAError(
                f"{uses_controls[0]} needs control rows (cp_type {schema.CONTROL}) among the training rows, "
                f"but {what} has none; expected data with controls, or the setting off"
            )
        self.fold, self.seed = fold, seed
        self.preprocessor = build_feature_pipeline(
            self.genes, self.cells, seed=FEATURE_SEED, device=str(self.device), **self.feature_params
        )
        controls = self.features.iloc[control_idx]
        x_train = self._finite(fit_transform_features(self.preprocessor, self.features.iloc[train_idx], controls), fold)
        self.augmentation = None
        if self.control_augmentation > 0:
            x_controls = self._finite(self.preprocessor.transform(controls), fold)
            self.augmentation = ControlAugmentation(self.control_augmentation, self.tensor(x_controls))
        choosing = self.choosing[val_idx]
        if len(val_idx) and not choosing.any():
            log.info("%s has no new-drug rows: its best epoch is chosen on its treated rows", what)
            choosing = np.ones(len(val_idx), dtype=bool)
        x_val = (
            self._finite(self.preprocessor.transform(self.features.iloc[val_idx]), fold)
            if len(val_idx)
            else np.zeros((0, x_train.shape[1]), dtype=np.float32)  # no validation rows to transform
        )
        self.tensors = FoldTensors(
            x_train=self.tensor(x_train),
            y_train=self.tensor(self.targets[train_idx]),
            x_val=self.tensor(x_val),
            y_val=self.tensor(self.targets[val_idx]),
            val_choosing=torch.from_numpy(np.flatnonzero(choosing)).to(self.device),
        )
        self.inputs = (self.tensors.x_train, self.tensors.x_val)
        return self

    def _finite(self, x: np.ndarray, fold: int) -> np.ndarray:
        """Non-finite features would turn every loss into NaN: stop and name the settings."""
        if not np.isfinite(x).all():
            raise MoAError(
                f"fold {fold}: the feature pipeline produced NaN or infinite values "
                f"(features={self.feature_params}); expected finite features"
            )
        return x

    @property
    def n_features(self) -> int:
        assert self.tensors is not None, "call set_fold first"
        return self.tensors.x_train.shape[1]

    def batches(self, x: torch.Tensor, y: torch.Tensor, train: bool) -> TensorBatches:
        """Mini-batches of any tensors of this fold (e.g. another target matrix
        for pretraining, or features with stacked columns appended)."""
        if train:
            return TensorBatches(x, y, self.batch_size, shuffle=True, seed=self.seed * 1000 + self.fold, augment=self.augmentation)
        return TensorBatches(x, y, self.eval_batch_size, shuffle=False, drop_singleton=False)

    def val_batches(self, x_val: torch.Tensor | None = None) -> TensorBatches:
        """The rows whose log loss chooses the best epoch (``choosing``);
        ``x_val``: the validation rows with stacked columns appended."""
        t = self.tensors
        x = t.x_val if x_val is None else x_val
        return self.batches(x[t.val_choosing], t.y_val[t.val_choosing], train=False)

    def train_dataloader(self) -> TensorBatches:
        return self.batches(self.inputs[0], self.tensors.y_train, train=True)

    def val_dataloader(self) -> TensorBatches:
        return self.val_batches(self.inputs[1])
