"""The feature pipeline is fitted on a fold's treated training rows only."""

import numpy as np
import pandas as pd
import pytest

from moa_lit import schema
from moa_lit.training.datamodule import MoADataModule, TensorBatches
from moa_lit.errors import MoAError
from moa_lit.training.features import RankGauss, build_feature_pipeline, fit_transform_features

ALL_STEPS = dict(
    rank_gauss=True,
    n_quantiles=50,
    pca_genes=3,
    pca_cells=2,
    factor_analysis_genes=2,
    factor_analysis_cells=1,
    row_stats=True,
    variance_threshold=0.01,
)


def make_frame(n=120, n_genes=12, n_cells=6, seed=0):
    rng = np.random.default_rng(seed)
    layout = schema.FeatureLayout.kaggle(n_genes, n_cells)
    frame = pd.DataFrame(rng.standard_t(4, size=(n, n_genes + n_cells)).astype(np.float32), columns=layout.numeric)
    frame.insert(0, schema.CP_DOSE, rng.choice(schema.CP_DOSES, n))
    frame.insert(0, schema.CP_TIME, rng.choice(schema.CP_TIMES, n))
    frame.insert(0, schema.CP_TYPE, np.where(rng.random(n) < 0.1, schema.CONTROL, schema.TREATED))
    frame.insert(0, schema.ID, [f"id_{i:09x}" for i in range(n)])
    targets = (rng.random((n, 4)) < 0.2).astype(np.float32)
    targets[frame[schema.CP_TYPE].to_numpy() == schema.CONTROL] = 0
    return frame, targets, layout


def make_dm(frame, targets, layout, folds, **params):
    return MoADataModule(
        frame,
        targets,
        folds,
        (frame[schema.CP_TYPE] == schema.CONTROL).to_numpy(),
        list(layout.genes),
        list(layout.cells),
        feature_params=params or ALL_STEPS,
        batch_size=16,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_gauss_transform_equals_scikit_learn(dtype):
    """The torch transform gives scikit-learn's output: on ties (a floor value
    repeated over many knots, as c-* columns at -10; a constant column), on
    knots, beyond the fitted range, and with the 10,000-row subsample in play."""
    from sklearn.preprocessing import QuantileTransformer

    rng = np.random.default_rng(7)
    n, cols = 12_500, 40
    train = rng.standard_t(3, size=(n, cols))
    train[rng.random((n, cols)) < 0.3] = -10.0  # tied knots
    train[:, 3] = np.round(train[:, 3])  # few distinct values: ties inside the range
    train[:, 5] = 2.0  # constant: every knot tied
    train = train.astype(dtype)
    new = np.concatenate([
        rng.standard_t(3, size=(500, cols)) * 3,  # beyond the fitted range too
        np.repeat(train[:50], 1, axis=0),  # exactly on training values, some of them knots
        np.full((5, cols), -10.0),
    ]).astype(dtype)
    ours = RankGauss(n_quantiles=60, random_state=3).fit(train)
    theirs = QuantileTransformer(n_quantiles=60, output_distribution="normal", random_state=3).fit(train)
    np.testing.assert_array_equal(ours.quantiles_, theirs.quantiles_)
    for x in (train, new):
        np.testing.assert_allclose(ours.transform(x), theirs.transform(x), rtol=0, atol=1e-12 if dtype == np.float64 else 0)
    # Fitted for a GPU: on the GPU where there is one, else on the CPU (a GPU
    # run's preprocessor on a laptop); the GPU's float64 normal quantile may
    # differ from the CPU's in the last bits.
    on_gpu = ours.set_params(device="cuda:0").transform(new)
    np.testing.assert_allclose(on_gpu, theirs.transform(new), rtol=0, atol=1e-6)
    # One knot (no segment): scikit-learn's own transform.
    ours = RankGauss(n_quantiles=1, random_state=3).fit(train)
    theirs = QuantileTransformer(n_quantiles=1, output_distribution="normal", random_state=3).fit(train)
    np.testing.assert_array_equal(ours.transform(new), theirs.transform(new))


def test_pipeline_output_shape_and_dtype():
    frame, _, layout = make_frame()
    pipe = build_feature_pipeline(layout.genes, layout.cells, **ALL_STEPS)
    out = fit_transform_features(pipe, frame)
    np.testing.assert_array_equal(pipe.transform(frame), out)
    assert out.dtype == np.float32
    # 12 genes + 3 PCA + 2 FA, 6 cells + 2 PCA + 1 FA, 2x4 row stats, 3 + 2 one-hot (before the threshold)
    assert 0 < out.shape[1] <= 12 + 5 + 6 + 3 + 8 + 5
    assert np.isfinite(out).all()


def test_no_step_sees_validation_or_test_rows_while_fitting():
    frame, targets, layout = make_frame()
    folds = np.arange(len(frame)) % 3
    dm = make_dm(frame, targets, layout, folds).set_fold(1)

    # Scramble everything the fitting must not see: the fold's validation rows
    # and the control rows. The fitted pipeline and the training tensors must
    # not change at all.
    poisoned = frame.copy()
    unseen = (folds == 1) | (frame[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    poisoned.loc[unseen, layout.numeric] = poisoned.loc[unseen, layout.numeric] * 100 + 7
    dm2 = make_dm(poisoned, targets, layout, folds).set_fold(1)

    np.testing.assert_array_equal(dm.tensors.x_train.numpy(), dm2.tensors.x_train.numpy())
    other = frame.sample(30, random_state=0)
    np.testing.assert_array_equal(dm.preprocessor.transform(other), dm2.preprocessor.transform(other))

    # ... and scrambling a training row does change it (the check can fail).
    seen = np.flatnonzero(~unseen)[:5]
    poisoned.loc[seen, layout.numeric] = poisoned.loc[seen, layout.numeric] * 100 + 7
    dm3 = make_dm(poisoned, targets, layout, folds).set_fold(1)
    assert not np.array_equal(dm.preprocessor.transform(other), dm3.preprocessor.transform(other))


def test_train_rows_exclude_fold_and_controls():
    frame, targets, layout = make_frame()
    folds = np.arange(len(frame)) % 3
    dm = make_dm(frame, targets, layout, folds)
    rows = dm.train_rows(0)
    assert not np.isin(rows, np.flatnonzero(folds == 0)).any()
    assert (frame[schema.CP_TYPE].to_numpy()[rows] == schema.TREATED).all()


def test_variance_threshold_keeps_one_hot_and_row_statistics():
    frame, _, layout = make_frame()
    params = dict(rank_gauss=True, n_quantiles=50, row_stats=True)
    n_all = fit_transform_features(build_feature_pipeline(layout.genes, layout.cells, **params), frame).shape[1]
    thresholded = fit_transform_features(
        build_feature_pipeline(layout.genes, layout.cells, variance_threshold=0.8, **params), frame
    )
    # 18 rank-Gauss columns (variance ~1) survive 0.8, and so do the 8 row
    # statistics and 5 one-hot columns (variance <= 0.25), which it does not cover
    assert n_all == 18 + 8 + 5
    assert thresholded.shape[1] == n_all
    # a constant gene column is dropped
    frame["g-0"] = np.float32(1.0)
    constant = fit_transform_features(
        build_feature_pipeline(layout.genes, layout.cells, variance_threshold=0.8, **params), frame
    )
    assert constant.shape[1] == n_all - 1


def test_variance_threshold_removing_everything_is_a_clear_error():
    frame, _, layout = make_frame()
    pipe = build_feature_pipeline(layout.genes, layout.cells, variance_threshold=1e9)
    with pytest.raises(MoAError, match=r"^features.variance_threshold=1000000000.0 leaves zero g-\* or c-\* columns"):
        fit_transform_features(pipe, frame)


def test_too_many_components_is_a_clear_error():
    from moa_lit.settings import FeatureSettings

    _, _, layout = make_frame()
    with pytest.raises(MoAError) as refused:
        FeatureSettings(pca_cells=99).check_against_data(rows=100, n_genes=len(layout.genes), n_cells=len(layout.cells))
    assert str(refused.value) == "features.pca_cells=99: expected at most 6, the number of c-* columns"


def test_tensor_batches_cover_rows_once_and_reshuffle():
    import torch

    x = torch.arange(10, dtype=torch.float32)[:, None]
    batches = TensorBatches(x, x, batch_size=3, shuffle=True, seed=0)
    # 3 + 3 + 3 + 1: the single-row tail is dropped (batch norm needs 2 rows)
    assert len(batches) == 3
    first = torch.cat([b[0] for b in batches]).flatten()
    second = torch.cat([b[0] for b in batches]).flatten()
    assert len(first) == 9 and len(set(first.tolist())) == 9
    assert not torch.equal(first, second)
    ordered = TensorBatches(x, x, batch_size=4, shuffle=False, drop_singleton=False)
    assert torch.equal(torch.cat([b[0] for b in ordered]), x)


def test_row_statistics_of_constant_rows_are_finite():
    from moa_lit.training.features import row_statistics

    x = np.vstack([np.full(10, -10.0), np.arange(10.0)])
    stats = row_statistics(x)
    assert np.isfinite(stats).all()
    np.testing.assert_allclose(stats[0], [-10.0, 0.0, 0.0, 0.0])
