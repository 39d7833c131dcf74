import numpy as np
import pandas as pd
import pytest

from moa_lit.errors import MoAError
from moa_lit.training.folds import assign_folds


def _check_drug_aware(folds, drug, targets, n_folds, threshold=18):
    drug = pd.Series(np.asarray(drug))
    counts = drug.map(drug.value_counts())
    # every row in exactly one fold
    assert folds.shape == (len(drug),)
    assert set(np.unique(folds)) == set(range(n_folds))
    # drugs with <= threshold rows never straddle folds
    per_drug = pd.Series(folds)[counts.to_numpy() <= threshold].groupby(drug[counts <= threshold]).nunique()
    assert (per_drug == 1).all()
    # per-target positives balanced: each fold near 1/n_folds of a target's positives
    pos = targets.sum(axis=0)
    # (whole drugs are coarse units, so rarer targets cannot be split evenly;
    # a random split of drugs to folds is off by ~0.2 here, stratified ~0.05)
    share = np.stack([targets[folds == k].sum(axis=0) for k in range(n_folds)]) / np.maximum(pos, 1)
    deviation = np.abs(share - 1 / n_folds).max(axis=0)
    assert deviation[pos >= 50].mean() < 0.08
    assert deviation[pos >= 200].max() < 0.08
    sizes = np.bincount(folds) / len(folds)
    assert np.abs(sizes - 1 / n_folds).max() < 0.05


def test_drug_aware_folds_on_real_labels(real_labels_dir):
    scored = pd.read_csv(real_labels_dir / "train_targets_scored.csv.zip")
    drug = pd.read_csv(real_labels_dir / "train_drug.csv.zip")
    assert (scored["sig_id"].to_numpy() == drug["sig_id"].to_numpy()).all()
    targets = scored.drop(columns="sig_id").to_numpy()
    folds = assign_folds(targets, drug["drug_id"], n_folds=5, seed=42)
    _check_drug_aware(folds, drug["drug_id"], targets, 5)
    # the frequent drugs (> 18 rows) are spread over all folds
    big = drug["drug_id"].map(drug["drug_id"].value_counts()) > 18
    assert pd.Series(folds[big.to_numpy()]).groupby(drug["drug_id"][big].to_numpy()).nunique().min() == 5


def test_drug_aware_folds_on_synthetic_labels():
    rng = np.random.default_rng(1)
    n_drugs = 600
    sizes = np.where(rng.random(n_drugs) < 0.9, 6, 12)
    drug = np.repeat(np.arange(n_drugs), sizes)
    drug_labels = (rng.random((n_drugs, 20)) < 0.05).astype(int)
    targets = drug_labels[drug]
    # two frequent drugs split row-wise
    drug = np.concatenate([drug, np.full(200, -1), np.full(150, -2)])
    targets = np.vstack([targets, np.zeros((200, 20), int), np.tile(drug_labels[:1], (150, 1))])
    folds = assign_folds(targets, drug, n_folds=4, seed=0)
    _check_drug_aware(folds, drug, targets, 4)


def test_same_seed_same_folds_and_row_wise_fallback():
    rng = np.random.default_rng(2)
    targets = (rng.random((200, 5)) < 0.1).astype(int)
    a = assign_folds(targets, None, n_folds=5, seed=3)
    b = assign_folds(targets, None, n_folds=5, seed=3)
    np.testing.assert_array_equal(a, b)
    assert np.bincount(a).min() >= 35


def test_bad_fold_settings():
    targets = np.zeros((10, 2))
    with pytest.raises(MoAError, match="cv.n_folds=1"):
        assign_folds(targets, None, n_folds=1)
    with pytest.raises(MoAError, match="cv.n_folds=20"):
        assign_folds(targets, None, n_folds=20)
