import numpy as np
import pytest
from sklearn.metrics import log_loss

from moa_lit.scoring.metric import mean_logloss, per_target_logloss


def test_mean_logloss_matches_sklearn_column_mean():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 7)) < 0.2).astype(int)
    y[0] = 1  # every column has both classes for sklearn
    y[1] = 0
    p = rng.random((300, 7))
    expected = np.mean([log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(7)])
    assert mean_logloss(y, p) == pytest.approx(expected, rel=1e-12)


def test_predictions_are_clipped_like_the_competition():
    y = np.array([[1.0], [0.0]])
    p = np.array([[0.0], [1.0]])  # confidently wrong: clipped at 1e-15, not infinite
    assert mean_logloss(y, p) == pytest.approx(-np.log(1e-15), rel=1e-4)


def test_per_target_and_prior():
    y = np.array([[1, 0], [0, 0], [0, 1], [0, 0]])
    prior = np.full((4, 2), 0.25)  # each target's training prevalence
    losses = per_target_logloss(y, prior)
    expected = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose(losses, [expected, expected])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        mean_logloss(np.zeros((3, 2)), np.zeros((3, 3)))
