"""Per-target calibration of a run's final probabilities (``calibration.method``):
``temperature`` p' = sigmoid(logit(p) / T_j), ``affine`` p' = sigmoid(a_j logit(p) + b_j).

Fitted on OOF predictions of the rows that behave like new drugs by penalised
log loss, pulled toward no change (a=1, b=0) the harder the fewer distinct
drugs hold the target's positives: a target whose positives come from D drugs
moves about D / (D + strength) of the way to its own fit, one with none stays
unchanged. :func:`nested_calibration` calibrates each fold's OOF rows with
parameters fitted on the other folds' rows only, so the OOF score stays honest."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from moa_lit.scoring.metric import EPS


@dataclass(frozen=True)
class Calibration:
    """The fitted parameters, one (a, b) per target in the run's target order (T = 1 / a)."""

    method: str
    strength: float
    a: np.ndarray
    b: np.ndarray

    def apply(self, p: np.ndarray, clip: tuple[float, float] | None, is_control) -> np.ndarray:
        """Calibrated ``p``, then ``clip``, controls at exactly 0."""
        out = expit(self.a * logit(np.clip(p, EPS, 1.0 - EPS)) + self.b)
        if clip is not None:
            out = np.clip(out, *clip)
        out[np.asarray(is_control, dtype=bool)] = 0.0
        return out

    def to_json(self) -> dict:
        return {"method": self.method, "strength": self.strength, "a": self.a.tolist(), "b": self.b.tolist()}

    @classmethod
    def from_json(cls, raw: dict) -> "Calibration":
        return cls(str(raw["method"]), float(raw["strength"]), np.asarray(raw["a"], dtype=np.float64), np.asarray(raw["b"], dtype=np.float64))


def drugs_with_positive(targets: np.ndarray, drug) -> np.ndarray:
    """Per target, the distinct drugs with a positive among the rows (each row its own drug without ids)."""
    if drug is None:
        return targets.sum(axis=0)
    return pd.DataFrame(targets).groupby(np.asarray(drug)).max().to_numpy().sum(axis=0)


def fit_calibration(p: np.ndarray, targets: np.ndarray, drug, method: str, strength: float, steps: int = 50) -> Calibration:
    """Damped Newton steps, all targets at once, on each target's log loss summed
    over the rows per positive row + strength / (2 D) * (the mean over its
    positive rows of the squared logit change (a - 1) logit(p) + b, + (a - 1)^2);
    D: the target's drugs with a positive. Near calibration a shift of the logits
    where the positives lie costs about its square in log loss per positive row,
    so the penalty is a prior worth ``strength`` drugs that the target is
    calibrated: there it moves about D / (D + strength) of the way to its own
    fit; (a - 1)^2 keeps the slope from swinging logits far from the positives."""
    z = logit(np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS))
    y = np.asarray(targets, dtype=np.float64)
    n_drugs = drugs_with_positive(y, drug)
    free = n_drugs > 0  # a target without a positive drug stays unchanged
    lam = np.where(free, strength / np.maximum(n_drugs, 1), 0.0)
    scale = 1.0 / np.maximum(y.sum(axis=0), 1.0)
    p_aa, p_ab, p_bb = lam * ((y * z * z).sum(axis=0) * scale + 1), lam * (y * z).sum(axis=0) * scale, lam
    affine = method == "affine"
    a, b = np.ones(z.shape[1]), np.zeros(z.shape[1])

    def objective(a, b):
        s, da = a * z + b, a - 1
        return (np.logaddexp(0.0, s) - y * s).sum(axis=0) * scale + (p_aa * da * da + 2 * p_ab * da * b + p_bb * b * b) / 2

    current = objective(a, b)
    for _ in range(steps):
        q = expit(a * z + b)
        r, w = (q - y) * scale, q * (1 - q) * scale
        g_a = (r * z).sum(axis=0) + p_aa * (a - 1) + p_ab * b
        g_b = r.sum(axis=0) + p_ab * (a - 1) + p_bb * b
        h_aa, h_ab, h_bb = (w * z * z).sum(axis=0) + p_aa, (w * z).sum(axis=0) + p_ab, w.sum(axis=0) + p_bb
        if affine:
            det = h_aa * h_bb - h_ab**2
            step_a, step_b = (h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det
        else:
            step_a, step_b = g_a / h_aa, np.zeros_like(b)
        step_a, step_b = np.where(free, step_a, 0.0), np.where(free, step_b, 0.0)
        if max(np.abs(step_a).max(), np.abs(step_b).max()) < 1e-8:
            break
        t = np.ones_like(a)
        for _ in range(30):  # halve each target's step until its objective does not rise
            trial = objective(a - t * step_a, b - t * step_b)
            worse = trial > current + 1e-12 * np.abs(current)  # rounding is no rise
            if not worse.any():
                break
            t = np.where(worse, t / 2, t)
        t = np.where(worse, 0.0, t)
        a, b, current = a - t * step_a, b - t * step_b, np.where(worse, current, trial)
    return Calibration(method, float(strength), a, b)


def nested_calibration(oof, targets, folds, fold_ids, fit_rows, drug, method: str, strength: float, clip, is_control):
    """(OOF with each fold's rows calibrated by parameters fitted on the other
    folds' ``fit_rows`` only, the calibration fitted on every fold's ``fit_rows``)."""
    drug = None if drug is None else np.asarray(drug)

    def fit(rows):
        return fit_calibration(oof[rows], targets[rows], None if drug is None else drug[rows], method, strength)

    calibrated = oof.copy()
    for k in fold_ids:
        rows = folds == k
        calibrated[rows] = fit(fit_rows & (folds != k)).apply(oof[rows], clip, is_control[rows])
    return calibrated, fit(fit_rows)
