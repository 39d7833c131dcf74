"""Control-based levers (issue 21, point 4): centring on the training
controls' mean per cp_time and cp_dose (``features.control_centring``) and
training rows augmented as x + (ctl_a - ctl_b) (``loader.control_augmentation``).
Both are off by default, and then nothing changes."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

import moa_lit
from conftest import compose_train
from moa_lit import schema
from moa_lit.errors import MoAError
from moa_lit.settings import FeatureSettings, LoaderSettings
from moa_lit.training.datamodule import MoADataModule, epoch_seed
from moa_lit.training.features import build_feature_pipeline, fit_transform_features

N_GENES, N_CELLS = 6, 4


def planted_frame(n=240, seed=0):
    """Rows with a large planted shift per (time, dose) cell, shared by treated
    rows and controls; no control in the cell (72, D2)."""
    rng = np.random.default_rng(seed)
    layout = schema.FeatureLayout.kaggle(N_GENES, N_CELLS)
    time, dose = rng.choice(schema.CP_TIMES, n), rng.choice(schema.CP_DOSES, n)
    control = (rng.random(n) < 0.25) & ~((time == 72) & (dose == "D2"))
    shift = (np.searchsorted(schema.CP_TIMES, time) * 2 + (dose == "D2"))[:, None] * 3.0
    values = rng.standard_t(4, size=(n, N_GENES + N_CELLS)) + shift
    frame = pd.DataFrame(values, columns=layout.numeric)
    frame.insert(0, schema.CP_DOSE, dose)
    frame.insert(0, schema.CP_TIME, time)
    frame.insert(0, schema.CP_TYPE, np.where(control, schema.CONTROL, schema.TREATED))
    frame.insert(0, schema.ID, [f"id_{i:09x}" for i in range(n)])
    targets = (rng.random((n, 3)) < 0.2).astype(np.float32)
    targets[control] = 0
    folds = np.arange(n) % 2
    return frame, targets, folds, layout


def datamodule(frame, targets, folds, layout, augmentation=0.0, **features):
    return MoADataModule(
        frame, targets, folds, (frame[schema.CP_TYPE] == schema.CONTROL).to_numpy(), list(layout.genes),
        list(layout.cells), feature_params={"n_quantiles": 20, **features}, batch_size=16,
        control_augmentation=augmentation,
    )


def test_both_levers_are_off_by_default():
    assert FeatureSettings().control_centring is False and LoaderSettings().control_augmentation == 0.0
    cfg = compose_train([])
    assert cfg.features.control_centring is False and cfg.loader.control_augmentation == 0.0
    _, _, _, layout = planted_frame()
    assert [name for name, _ in build_feature_pipeline(layout.genes, layout.cells).steps] == ["columns", "float32"]


def test_centring_subtracts_the_training_controls_mean_of_each_cell_before_the_rest():
    frame, targets, folds, layout = planted_frame()
    test, _, _, _ = planted_frame(n=60, seed=1)
    dm = datamodule(frame, targets, folds, layout, control_centring=True).set_fold(0)

    numeric = list(layout.numeric)
    controls = frame[(folds != 0) & (frame[schema.CP_TYPE] == schema.CONTROL).to_numpy()]
    means = controls.groupby([schema.CP_TIME, schema.CP_DOSE])[numeric].mean()

    def centred(rows):
        out = rows.copy()
        for i, (t, d) in enumerate(zip(rows[schema.CP_TIME], rows[schema.CP_DOSE])):
            # The cell without controls falls back to the mean of all training controls.
            mean = means.loc[(t, d)] if (t, d) in means.index else controls[numeric].mean()
            out.iloc[i, out.columns.get_indexer(numeric)] = rows.iloc[i][numeric].to_numpy(float) - mean.to_numpy()
        return out

    treated = frame[schema.CP_TYPE].to_numpy() == schema.TREATED
    rest = build_feature_pipeline(layout.genes, layout.cells, n_quantiles=20)  # fitted on treated training rows only
    expected_train = fit_transform_features(rest, centred(frame[(folds != 0) & treated]))
    np.testing.assert_allclose(dm.tensors.x_train.numpy(), expected_train, atol=1e-6)
    np.testing.assert_allclose(dm.tensors.x_val.numpy(), rest.transform(centred(frame[(folds == 0) & treated])), atol=1e-6)
    np.testing.assert_allclose(dm.preprocessor.transform(test), rest.transform(centred(test)), atol=1e-6)


def test_a_lever_that_needs_controls_refuses_a_fold_without_them():
    frame, targets, folds, layout = planted_frame()
    frame[schema.CP_TYPE] = schema.TREATED
    with pytest.raises(MoAError, match=r"^features.control_centring needs control rows \(cp_type ctl_vehicle\)"):
        datamodule(frame, targets, folds, layout, control_centring=True).set_fold(0)
    with pytest.raises(MoAError, match=r"^loader.control_augmentation needs control rows"):
        datamodule(frame, targets, folds, layout, augmentation=0.5).set_fold(0)


def _plain_batches(dm, epochs=2):
    """Today's batches, computed here: x_train in the order of (seed, fold, epoch)."""
    n, out = len(dm.tensors.x_train), []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(dm.seed * 1000 + dm.fold, epoch)))
        out += [b for b in order.split(dm.batch_size) if len(b) > 1]  # a last batch of one row is dropped
    return out


def _epochs(dm, epochs=2):
    loader = dm.train_dataloader()
    return [x for _ in range(epochs) for x, _ in loader]


def test_no_augmentation_serves_todays_batches():
    frame, targets, folds, layout = planted_frame()
    dm = datamodule(frame, targets, folds, layout).set_fold(1, seed=3)
    assert dm.augmentation is None
    served, plain = _epochs(dm), _plain_batches(dm)
    assert len(served) == len(plain)
    for x, idx in zip(served, plain):
        assert torch.equal(x, dm.tensors.x_train[idx])


def test_augmented_rows_move_by_the_difference_of_two_training_controls_of_their_cell():
    frame, targets, folds, layout = planted_frame()
    dm = datamodule(frame, targets, folds, layout, augmentation=0.5, pca_genes=2).set_fold(0)
    is_control = (frame[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    controls = frame[(folds != 0) & is_control]
    x_controls = dm.preprocessor.transform(controls)
    train = frame.iloc[dm.train_rows(0)]
    cell_of = lambda rows: list(zip(rows[schema.CP_TIME], rows[schema.CP_DOSE]))  # noqa: E731
    control_cells, row_cells = np.array(cell_of(controls), dtype=object), cell_of(train)

    @functools.cache
    def differences(cell):
        same = [i for i, c in enumerate(control_cells) if tuple(c) == cell] or range(len(controls))
        return np.array([x_controls[a] - x_controls[b] for a, b in itertools.product(same, same)])

    served = _epochs(dm)
    torch.manual_seed(123)  # the draws are the run's (seed, fold, epoch)'s, not the global generator's
    assert all(torch.equal(x, again) for x, again in zip(served, _epochs(dm)))
    augmented = total = 0
    for x, idx in zip(served, _plain_batches(dm)):
        moved = (x - dm.tensors.x_train[idx]).numpy()
        for row, shift in zip(idx.tolist(), moved):
            total += 1
            if np.any(shift != 0):
                augmented += 1
                gap = np.abs(differences(row_cells[row]) - shift).max(axis=1)
                assert gap.min() < 1e-5, f"row {row}: moved by no difference of two controls of its cell"
    assert 0.35 < augmented / total < 0.65  # p = 0.5, each epoch afresh
    # Validation rows are never augmented.
    assert torch.equal(torch.cat([x for x, _ in dm.val_dataloader()]), dm.tensors.x_val[dm.tensors.val_choosing])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from moa_lit.train import train

    tmp = tmp_path_factory.mktemp("control_levers")
    made = {}
    for name in ("a", "b"):
        made[name] = tmp / name
        train(compose_train([
            "data.n_samples=300", "data.n_scored=12", f"data.dir={tmp / 'data'}", "cv.n_folds=2",
            "trainer.max_epochs=2", "model.net.hidden_size=32", "loader.batch_size=64",
            "callbacks.progress_bar.refresh_rate=0", "allow_worse_than_prior=true", "num_threads=1",
            "features.control_centring=true", "loader.control_augmentation=0.5", f"paths.output_dir={made[name]}",
        ]))
    return made, next((tmp / "data").glob("synthetic-*"))


def test_a_run_with_both_levers_predicts_its_submission_and_repeats(runs):
    made, data = runs
    run = made["a"]
    probabilities = moa_lit.load_run(run).predict_proba(pd.read_csv(data / schema.TEST_FEATURES))
    submission = pd.read_csv(run / "submission.csv", dtype={schema.ID: str})
    np.testing.assert_allclose(probabilities.iloc[:, 1:].to_numpy(), submission.iloc[:, 1:].to_numpy(), rtol=0, atol=1e-7)
    assert (made["a"] / "oof.csv").read_bytes() == (made["b"] / "oof.csv").read_bytes()
