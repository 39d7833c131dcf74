"""The synthetic lish-moa generator: layout, determinism, label and feature
statistics, the cached folder, and (where the real label files are present) a
comparison of label statistics with the real ones."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kurtosis

from moa_lit import schema
from moa_lit.data import synthetic
from moa_lit.data.synthetic import (
    FILE_NAMES,
    SyntheticConfig,
    ensure_synthetic,
    generate,
    is_toxic_mechanism,
    write_dataset,
)

SMALL = SyntheticConfig(n_samples=600, seed=3)
TINY = SyntheticConfig(n_samples=300, seed=5, n_genes=20, n_cells=8, n_scored=12, n_nonscored=10)


def _shared_labels_dir() -> Path:
    env = os.environ.get("MOA_SHARED_DIR")
    shared = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return shared / "data" / "lish-moa-labels"


@pytest.fixture(scope="module")
def small() -> dict[str, pd.DataFrame]:
    return generate(SMALL)


@pytest.fixture(scope="module")
def full() -> dict[str, pd.DataFrame]:
    """The default, full-size dataset (about 3 s to generate)."""
    return generate(SyntheticConfig())


def _targets(frames, name):
    return frames[name].drop(columns=schema.ID).to_numpy()


# ---------------------------------------------------------------- layout
def test_files_columns_and_dtypes(small):
    assert set(small) == set(FILE_NAMES)
    layout = schema.FeatureLayout.kaggle()
    for name in (schema.TRAIN_FEATURES, schema.TEST_FEATURES):
        frame = small[name]
        assert list(frame.columns) == layout.columns
        assert pd.api.types.is_string_dtype(frame[schema.ID])
        assert set(frame[schema.CP_TYPE]) <= set(schema.CP_TYPES)
        assert frame[schema.CP_TIME].dtype == np.int64
        assert set(frame[schema.CP_TIME]) == set(schema.CP_TIMES)
        assert set(frame[schema.CP_DOSE]) == set(schema.CP_DOSES)
        numeric = frame[layout.numeric]
        assert (numeric.dtypes == np.float64).all()
        assert np.array_equal(numeric.to_numpy(), np.round(numeric.to_numpy(), 4))
    assert len(small[schema.TRAIN_FEATURES]) == SMALL.n_samples
    assert len(small[schema.TEST_FEATURES]) == round(SMALL.test_fraction * SMALL.n_samples)

    scored, nonscored = small[schema.TRAIN_TARGETS_SCORED], small[schema.TRAIN_TARGETS_NONSCORED]
    assert scored.shape[1] == 1 + schema.N_SCORED and nonscored.shape[1] == 1 + schema.N_NONSCORED
    for frame in (scored, nonscored):
        assert frame.columns[0] == schema.ID
        values = frame.drop(columns=schema.ID)
        assert (values.dtypes == np.int64).all() and set(np.unique(values)) <= {0, 1}
        assert frame[schema.ID].equals(small[schema.TRAIN_FEATURES][schema.ID])
    names_s, names_ns = list(scored.columns[1:]), list(nonscored.columns[1:])
    assert len(set(names_s)) == len(names_s) and not set(names_s) & set(names_ns)
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names_s + names_ns)

    drug = small[schema.TRAIN_DRUG]
    assert list(drug.columns) == [schema.ID, schema.DRUG]
    assert drug[schema.DRUG].str.fullmatch(r"[0-9a-f]{9}").all()

    sub = small[schema.SAMPLE_SUBMISSION]
    assert list(sub.columns) == [schema.ID, *names_s]
    assert sub[schema.ID].equals(small[schema.TEST_FEATURES][schema.ID])
    assert (sub[names_s].to_numpy() == 0.5).all()


def test_ids_look_real_and_are_unique(small):
    train_ids = small[schema.TRAIN_FEATURES][schema.ID]
    test_ids = small[schema.TEST_FEATURES][schema.ID]
    both = pd.concat([train_ids, test_ids])
    assert both.str.fullmatch(r"id_[0-9a-f]{9}").all()
    assert both.is_unique


def test_written_files_read_back_equal_and_byte_identical(tmp_path):
    write_dataset(TINY, tmp_path / "a")
    write_dataset(TINY, tmp_path / "b")
    frames = generate(TINY)
    for name in FILE_NAMES:
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert a == b, name
        assert not a.startswith(b'"')  # bare header, as Kaggle writes it
        back = pd.read_csv(tmp_path / "a" / name)
        pd.testing.assert_frame_equal(back, frames[name])


def test_tiny_sizes_work():
    frames = generate(TINY)
    assert frames[schema.TRAIN_FEATURES].shape == (300, 4 + 20 + 8)
    assert frames[schema.TRAIN_TARGETS_SCORED].shape == (300, 13)
    assert frames[schema.TRAIN_TARGETS_NONSCORED].shape == (300, 11)


# ---------------------------------------------------------------- determinism
def test_same_seed_same_frames_other_seed_differs(small):
    again = generate(SMALL)
    for name in FILE_NAMES:
        pd.testing.assert_frame_equal(again[name], small[name])
    other = generate(replace(SMALL, seed=SMALL.seed + 1))
    for name in (schema.TRAIN_FEATURES, schema.TRAIN_TARGETS_SCORED, schema.TRAIN_DRUG):
        assert not other[name].equals(small[name])


# ---------------------------------------------------------------- labels, drugs
def test_controls(full):
    feats, drug = full[schema.TRAIN_FEATURES], full[schema.TRAIN_DRUG]
    control = (feats[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    assert abs(control.mean() - 0.078) < 0.005
    assert drug.loc[control, schema.DRUG].nunique() == 1
    assert not set(drug.loc[~control, schema.DRUG]) & set(drug.loc[control, schema.DRUG])
    assert _targets(full, schema.TRAIN_TARGETS_SCORED)[control].sum() == 0
    assert _targets(full, schema.TRAIN_TARGETS_NONSCORED)[control].sum() == 0
    test_control = (full[schema.TEST_FEATURES][schema.CP_TYPE] == schema.CONTROL).mean()
    assert abs(test_control - 0.078) < 0.01


def test_drug_replicates_share_labels(full):
    feats, drug = full[schema.TRAIN_FEATURES], full[schema.TRAIN_DRUG]
    sizes = drug[schema.DRUG].value_counts()
    assert 0.75 < (sizes == 6).mean() < 0.92
    assert 0.02 < (sizes == 1).mean() < 0.07
    assert ((sizes == 12) | (sizes == 18)).sum() > 0
    assert (sizes > 18).sum() == 10  # nine frequent drugs and the control
    # As on the real data (4,008 of 23,814 rows), the control included.
    assert 0.14 < sizes[sizes > 18].sum() / len(drug) < 0.20

    labels = pd.concat([drug[[schema.DRUG]], full[schema.TRAIN_TARGETS_SCORED].drop(columns=schema.ID),
                        full[schema.TRAIN_TARGETS_NONSCORED].drop(columns=schema.ID)], axis=1)
    assert (labels.groupby(schema.DRUG).nunique() <= 1).all().all()

    # A 6-row drug covers each dose x time cell once.
    six = sizes.index[sizes == 6]
    cells = feats[drug[schema.DRUG].isin(six)].assign(d=drug[schema.DRUG])
    assert (cells.groupby("d")[[schema.CP_DOSE, schema.CP_TIME]].value_counts() == 1).all()


def test_prevalence_is_skewed(full):
    scored = _targets(full, schema.TRAIN_TARGETS_SCORED)
    counts = scored.sum(axis=0)
    assert counts.min() >= 1 and (counts <= 2).sum() >= 1
    assert 10 <= (counts < 10).sum() <= 40
    assert 25 <= np.median(counts) <= 60
    assert 500 <= counts.max() <= 1000 and counts.max() > 10 * np.median(counts)
    assert 0.0025 < scored.mean() < 0.0045

    nonscored = _targets(full, schema.TRAIN_TARGETS_NONSCORED).sum(axis=0)
    assert 40 <= (nonscored == 0).sum() <= 110
    assert 20 <= nonscored.max() <= 150


def test_labels_per_row(full):
    share = np.bincount(_targets(full, schema.TRAIN_TARGETS_SCORED).sum(axis=1), minlength=4) / len(
        full[schema.TRAIN_DRUG])
    assert abs(share[0] - 0.39) < 0.04
    assert abs(share[1] - 0.53) < 0.04
    assert abs(share[2] - 0.065) < 0.02
    assert abs(share[3:].sum() - 0.015) < 0.01


def test_test_rows_are_new_drugs_and_sized(full):
    # The test split holds no drug file; its drugs are drawn apart from training
    # ones, so no test row repeats a training row's features.
    train, test = full[schema.TRAIN_FEATURES], full[schema.TEST_FEATURES]
    assert abs(len(test) / len(train) - 3982 / 23814) < 1e-3
    numeric = schema.FeatureLayout.kaggle().numeric
    merged = test[numeric[:5]].merge(train[numeric[:5]], how="inner")
    assert merged.empty


# ---------------------------------------------------------------- features
def test_cells_correlate_and_fall_for_toxic_mechanisms(full):
    feats = full[schema.TRAIN_FEATURES]
    cells = feats.filter(regex=r"^c-").to_numpy()
    corr = np.corrcoef(cells.T)
    assert corr[np.triu_indices_from(corr, 1)].mean() > 0.5
    assert cells.min() >= -10.0 and (cells == -10.0).any()

    scored = full[schema.TRAIN_TARGETS_SCORED]
    toxic_names = [n for n in scored.columns[1:] if is_toxic_mechanism(n)]
    assert toxic_names
    toxic = scored[toxic_names].to_numpy().sum(axis=1) > 0
    row_mean = cells.mean(axis=1)
    assert row_mean[toxic].mean() < row_mean[~toxic].mean() - 1.0


def test_genes_heavy_tailed_and_unit_scale(full):
    genes = full[schema.TRAIN_FEATURES].filter(regex=r"^g-").to_numpy()
    assert np.median(kurtosis(genes, axis=0, fisher=False)) > 3
    assert abs(genes.mean()) < 0.3 and 0.7 < genes.std() < 1.5


def test_dose_and_time_strengthen_the_effect(full):
    feats = full[schema.TRAIN_FEATURES]
    scored = full[schema.TRAIN_TARGETS_SCORED]
    toxic = scored[[n for n in scored.columns[1:] if is_toxic_mechanism(n)]].to_numpy().sum(axis=1) > 0
    cell_mean = feats.filter(regex=r"^c-").mean(axis=1).to_numpy()
    dose, time = feats[schema.CP_DOSE].to_numpy(), feats[schema.CP_TIME].to_numpy()
    assert cell_mean[toxic & (dose == "D2")].mean() < cell_mean[toxic & (dose == "D1")].mean()
    assert cell_mean[toxic & (time == 72)].mean() < cell_mean[toxic & (time == 24)].mean()

    # Gene responses of labelled drugs: spread of a row grows with dose and time.
    labelled = (scored.drop(columns=schema.ID).to_numpy().sum(axis=1) > 0) & ~toxic
    spread = feats.filter(regex=r"^g-").std(axis=1).to_numpy()
    assert spread[labelled & (dose == "D2")].mean() > spread[labelled & (dose == "D1")].mean()
    assert spread[labelled & (time == 72)].mean() > spread[labelled & (time == 24)].mean()


def test_controls_carry_no_signal(full):
    feats = full[schema.TRAIN_FEATURES]
    control = (feats[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    genes = feats.filter(regex=r"^g-").to_numpy()
    # Control gene profiles are pure noise: no gene's mean moves off zero.
    assert np.abs(genes[control].mean(axis=0) - genes[control].mean()).max() < 0.3


# ---------------------------------------------------------------- the cached folder
def test_ensure_generates_then_reuses(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="moa_lit.data.synthetic"):
        folder = ensure_synthetic(TINY, tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("synthetic-")
    assert {p.name for p in folder.iterdir()} == {*FILE_NAMES, synthetic.MANIFEST}
    assert "generated" in caplog.text and str(folder) in caplog.text
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="moa_lit.data.synthetic"):
        assert ensure_synthetic(TINY, tmp_path) == folder
    assert "reused" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes

    other = ensure_synthetic(replace(TINY, signal_strength=TINY.signal_strength * 2), tmp_path)
    assert other != folder and other.is_dir()
    assert not list(tmp_path.glob(".tmp-*"))


def test_interrupted_generation_is_not_reused(tmp_path, monkeypatch):
    real_write = synthetic._write_csv
    calls = []

    def failing_write(frame, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        real_write(frame, path)

    monkeypatch.setattr(synthetic, "_write_csv", failing_write)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(TINY, tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither a final folder nor a temp one

    monkeypatch.setattr(synthetic, "_write_csv", real_write)
    folder = ensure_synthetic(TINY, tmp_path)
    assert {p.name for p in folder.iterdir()} == {*FILE_NAMES, synthetic.MANIFEST}
    pd.testing.assert_frame_equal(pd.read_csv(folder / schema.TRAIN_DRUG), generate(TINY)[schema.TRAIN_DRUG],
                                  check_dtype=False)


def test_folder_without_manifest_is_regenerated(tmp_path):
    folder = ensure_synthetic(TINY, tmp_path)
    (folder / synthetic.MANIFEST).unlink()
    (folder / schema.TRAIN_FEATURES).write_text("half written")
    assert ensure_synthetic(TINY, tmp_path) == folder
    assert (folder / synthetic.MANIFEST).is_file()
    assert pd.read_csv(folder / schema.TRAIN_FEATURES).shape[0] == TINY.n_samples


# ---------------------------------------------------------------- against the real labels
@pytest.fixture(scope="module")
def real() -> dict[str, pd.DataFrame]:
    folder = _shared_labels_dir()
    if not folder.is_dir():
        pytest.skip(f"real label files not found at {folder} (set MOA_SHARED_DIR to the shared folder)")
    names = (schema.TRAIN_TARGETS_SCORED, schema.TRAIN_TARGETS_NONSCORED, schema.TRAIN_DRUG)
    return {name: pd.read_csv(folder / f"{name}.zip") for name in names}


def test_label_statistics_match_the_real_ones(full, real):
    for name in (schema.TRAIN_TARGETS_SCORED, schema.TRAIN_TARGETS_NONSCORED):
        assert full[name].shape == real[name].shape

    def row_shares(frames):
        counts = _targets(frames, schema.TRAIN_TARGETS_SCORED).sum(axis=1)
        return np.array([(counts == 0).mean(), (counts == 1).mean(), (counts == 2).mean(), (counts >= 3).mean()])

    assert np.allclose(row_shares(full), row_shares(real), atol=0.03)

    q = [10, 25, 50, 75, 90]
    ours = np.percentile(_targets(full, schema.TRAIN_TARGETS_SCORED).sum(axis=0), q)
    theirs = np.percentile(_targets(real, schema.TRAIN_TARGETS_SCORED).sum(axis=0), q)
    assert np.all((ours >= theirs / 2) & (ours <= theirs * 2)), (ours, theirs)

    empty = [(_targets(f, schema.TRAIN_TARGETS_NONSCORED).sum(axis=0) == 0).sum() for f in (full, real)]
    assert abs(empty[0] - empty[1]) <= 25

    def drug_shares(frames):
        sizes = frames[schema.TRAIN_DRUG][schema.DRUG].value_counts()
        return np.array([(sizes == 1).mean(), (sizes == 6).mean(), ((sizes == 12) | (sizes == 18)).mean(),
                         sizes.iloc[0] / sizes.sum(), sizes[sizes > 18].sum() / sizes.sum()])

    assert np.allclose(drug_shares(full), drug_shares(real), atol=0.03)
