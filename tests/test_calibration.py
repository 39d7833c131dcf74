"""Per-target calibration (``calibration.method``, training/calibration.py) on
planted miscalibration: the affine fit recovers the planted map and lowers the
log loss of rows it never saw; the nested OOF of a fold never uses that fold's
labels; a target whose positives come from one drug stays near no change."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from moa_lit.scoring.metric import mean_logloss
from moa_lit.training.calibration import fit_calibration, nested_calibration

N_DRUGS, ROWS_PER_DRUG, N_TARGETS = 600, 6, 8


def planted(seed: int = 0):
    """Drugs whose rows share a true logit per target; labels drawn from it,
    predictions p = sigmoid(2 * true logit + 1) (overconfident and shifted)."""
    rng = np.random.default_rng(seed)
    drug = np.repeat(np.arange(N_DRUGS), ROWS_PER_DRUG)
    true_logit = np.repeat(rng.normal(-3.5, 1.5, (N_DRUGS, N_TARGETS)), ROWS_PER_DRUG, axis=0)
    true_logit += rng.normal(0, 0.3, true_logit.shape)
    targets = (rng.random(true_logit.shape) < expit(true_logit)).astype(float)
    return drug, targets, expit(2 * true_logit + 1)


def test_affine_recovers_the_planted_map_and_helps_on_unseen_drugs():
    drug, targets, p = planted()
    fit, held_out = drug < N_DRUGS // 2, drug >= N_DRUGS // 2
    calibration = fit_calibration(p[fit], targets[fit], drug[fit], "affine", strength=0.1)
    np.testing.assert_allclose(calibration.a, 0.5, atol=0.1)
    np.testing.assert_allclose(calibration.b, -0.5, atol=0.4)
    calibrated = calibration.apply(p[held_out], None, np.zeros(held_out.sum(), dtype=bool))
    before, after = mean_logloss(targets[held_out], p[held_out]), mean_logloss(targets[held_out], calibrated)
    assert after < 0.9 * before, (before, after)
    temperature = fit_calibration(p[fit], targets[fit], drug[fit], "temperature", strength=0.1)
    assert np.all(temperature.b == 0) and np.all((temperature.a > 0.4) & (temperature.a < 0.8))  # T = 1/a near 2


def test_nested_oof_of_a_fold_never_sees_its_labels():
    drug, targets, p = planted(1)
    folds = drug % 3
    is_control = np.zeros(len(drug), dtype=bool)
    is_control[::50] = True
    p[is_control] = 0.0
    fit_rows = ~is_control

    def run(labels):
        return nested_calibration(p, labels, folds, [0, 1, 2], fit_rows, drug, "affine", 1.0, (0.001, 0.999), is_control)

    nested, everywhere = run(targets)
    changed = targets.copy()
    changed[folds == 1] = 1 - changed[folds == 1]  # fold 1's labels turned over
    nested_changed, _ = run(changed)
    np.testing.assert_array_equal(nested_changed[folds == 1], nested[folds == 1])
    assert not np.allclose(nested_changed[folds != 1], nested[folds != 1])
    in_sample = everywhere.apply(p, (0.001, 0.999), is_control)
    assert not np.allclose(nested, in_sample)  # each fold's own parameters, not the all-rows fit
    assert np.all(nested[is_control] == 0) and nested[~is_control].min() >= 0.001 and nested.max() <= 0.999


def test_a_target_of_one_drug_stays_near_no_change():
    """Column 0: one drug (6 rows) likely positive, every other drug unlikely,
    planted as overconfident as the others; column 1 has many drugs with a
    positive; column 2 no positive at all."""
    drug, targets, p = planted(2)
    rng = np.random.default_rng(2)
    true_logit = np.where(drug == 7, 1.0, -7.0) + rng.normal(0, 0.3, len(drug))
    targets[:, 0] = (drug == 7) & (rng.random(len(drug)) < expit(true_logit))  # positives of drug 7 only
    p[:, 0] = expit(2 * true_logit + 1)
    targets[:, 2] = 0
    alone = fit_calibration(p, targets, drug, "affine", strength=0.01)
    assert abs(alone.a[0] - 1) > 0.2  # its own fit would move it
    calibration = fit_calibration(p, targets, drug, "affine", strength=10.0)
    assert abs(calibration.a[0] - 1) < 0.05 and abs(calibration.b[0]) < 0.1, (calibration.a[0], calibration.b[0])
    assert abs(calibration.a[1] - 1) > 0.3  # the many-drug target moves
    assert calibration.a[2] == 1 and calibration.b[2] == 0


@pytest.mark.parametrize("method", ["temperature", "affine"])
def test_parameters_survive_json(method):
    from moa_lit.training.calibration import Calibration

    drug, targets, p = planted(3)
    calibration = fit_calibration(p, targets, drug, method, strength=3.0)
    again = Calibration.from_json(calibration.to_json())
    np.testing.assert_array_equal(again.apply(p, None, np.zeros(len(p), dtype=bool)), calibration.apply(p, None, np.zeros(len(p), dtype=bool)))
