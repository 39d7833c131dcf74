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


def _shared_dir() -> Path:
    env = os.environ.get("MOA_SHARED_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def _shared_labels_dir() -> Path:
    return _shared_dir() / "data" / "lish-moa-labels"


def _shared_stats_dir() -> Path:
    return _shared_dir() / "data" / "lish-moa-feature-stats"


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
    assert set(small) == {*FILE_NAMES, *synthetic.BENCHMARK_FILES}
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
    for name in (*FILE_NAMES, *synthetic.BENCHMARK_FILES):
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
    assert {p.name for p in folder.iterdir()} == {*FILE_NAMES, synthetic.MANIFEST, synthetic.BENCHMARK_DIR}
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
    assert {p.name for p in folder.iterdir()} == {*FILE_NAMES, synthetic.MANIFEST, synthetic.BENCHMARK_DIR}
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


# ---------------------------------------------------------------- against the real feature statistics
# Tolerances, stated once. Per-column statistics are compared as distributions
# across columns (quantiles of the per-column std, min, max ...), on the default
# variant at full size (the real file's 23,814 rows: extremes depend on n).
STD_REL = 0.20  # each 5/25/50/75/95% quantile of the per-column std within 20%
QUARTILE_ABS = 0.10  # median over columns of the 25% and 75% quantiles
MEDIAN_ABS = 0.05  # median over columns of the column medians
MEAN_ABS = 0.20  # 5/50/95% quantiles of the column means
EXTREME_ABS = 1.5  # 25/50% quantiles of the column max, 50/75/95% of the column min
REACH_ABS = 0.12  # share of g-* columns reaching +10 and -10
META_ABS = 0.005  # cp_type, cp_time, cp_dose shares


@pytest.fixture(scope="module")
def real_stats() -> pd.DataFrame:
    path = _shared_stats_dir() / "train_features_describe.csv"
    if not path.is_file():
        pytest.skip(f"real feature statistics not found at {path} (set MOA_SHARED_DIR to the shared folder)")
    return pd.read_csv(path, index_col=0)


def _describe(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"mean": frame.mean(), "std": frame.std(), "min": frame.min(),
                         "25%": frame.quantile(0.25), "50%": frame.median(),
                         "75%": frame.quantile(0.75), "max": frame.max()})


@pytest.mark.parametrize("group", ["g-", "c-"])
def test_feature_statistics_match_the_real_file(full, real_stats, group):
    ours = _describe(full[schema.TRAIN_FEATURES].filter(regex="^" + group))
    theirs = real_stats[real_stats.index.str.startswith(group)]
    assert len(ours) == len(theirs)
    assert ours["min"].min() >= -10 and ours["max"].max() <= 10  # clipped as the real file is

    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    ratio = ours["std"].quantile(q).to_numpy() / theirs["std"].quantile(q).to_numpy()
    assert np.all(np.abs(ratio - 1) <= STD_REL), ratio
    for col in ("25%", "75%"):
        assert abs(ours[col].median() - theirs[col].median()) <= QUARTILE_ABS, col
    assert abs(ours["50%"].median() - theirs["50%"].median()) <= MEDIAN_ABS
    mean_q = [0.05, 0.5, 0.95]
    assert np.allclose(ours["mean"].quantile(mean_q), theirs["mean"].quantile(mean_q), atol=MEAN_ABS)
    assert np.allclose(ours["max"].quantile([0.25, 0.5]), theirs["max"].quantile([0.25, 0.5]), atol=EXTREME_ABS)
    assert np.allclose(ours["min"].quantile([0.5, 0.75, 0.95]), theirs["min"].quantile([0.5, 0.75, 0.95]),
                       atol=EXTREME_ABS)
    for side, reach in (("max", lambda s: s >= 10), ("min", lambda s: s <= -10)):
        assert abs(reach(ours[side]).mean() - reach(theirs[side]).mean()) <= REACH_ABS, side


def _real_meta_counts() -> dict[str, dict[str, int]]:
    path = _shared_stats_dir() / "column_summary.tsv"
    if not path.is_file():
        pytest.skip(f"real column summary not found at {path}")
    table = pd.read_csv(path, sep="\t")
    rows = table[(table["file"] == "train_features.csv") & table["col"].isin([schema.CP_TYPE, schema.CP_TIME, schema.CP_DOSE])]
    # "samples" reads e.g. trt_cp(21948)/ctl_vehicle(1866)
    return {row.col: {m[0]: int(m[1]) for m in re.findall(r"([^/()]+)\((\d+)\)", row.samples)}
            for row in rows.itertuples()}


def test_meta_counts_match_the_real_file(full):
    real = _real_meta_counts()
    feats = full[schema.TRAIN_FEATURES]
    for col, counts in real.items():
        total = sum(counts.values())
        ours = feats[col].astype(str).value_counts(normalize=True)
        assert set(ours.index) == set(counts), col
        for value, n in counts.items():
            assert abs(ours[value] - n / total) <= META_ABS, (col, value, ours[value], n / total)


def _cooccurrence(frames) -> dict[str, float]:
    scored = _targets(frames, schema.TRAIN_TARGETS_SCORED).astype(np.float32)
    nonscored = _targets(frames, schema.TRAIN_TARGETS_NONSCORED).astype(np.float32)
    has_s, has_ns = scored.sum(axis=1) > 0, nonscored.sum(axis=1) > 0
    pairs = scored.T @ nonscored
    return {"rows with a non-scored label": has_ns.sum(), "rows with both": (has_s & has_ns).sum(),
            "pairs that meet": (pairs > 0).sum(), "scored targets meeting one": (pairs.sum(axis=1) > 0).sum(),
            "non-scored targets meeting one": (pairs.sum(axis=0) > 0).sum()}


def test_scored_and_nonscored_cooccur_as_on_the_real_labels(full, real):
    # Real: 4,590 rows carry a non-scored label, 753 both kinds; 235 pairs meet.
    ours, theirs = _cooccurrence(full), _cooccurrence(real)
    for key in theirs:
        assert 0.7 * theirs[key] <= ours[key] <= 1.3 * theirs[key], (key, ours[key], theirs[key])


# ---------------------------------------------------------------- variants
MID = SyntheticConfig(n_samples=4000, seed=1)


@pytest.fixture(scope="module")
def by_variant() -> dict[str, dict[str, pd.DataFrame]]:
    return {v: generate(replace(MID, variant=v)) for v in synthetic.VARIANTS}


def test_variants_share_labels_and_the_realistic_background(by_variant):
    default = by_variant[synthetic.DEFAULT_VARIANT]
    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    for variant, frames in by_variant.items():
        for name in (schema.TRAIN_TARGETS_SCORED, schema.TRAIN_DRUG, schema.SAMPLE_SUBMISSION,
                     *synthetic.BENCHMARK_FILES):
            pd.testing.assert_frame_equal(frames[name], default[name])
        for group in ("g-", "c-"):
            ours = frames[schema.TRAIN_FEATURES].filter(regex="^" + group)
            base = default[schema.TRAIN_FEATURES].filter(regex="^" + group)
            assert ours.abs().max().max() <= 10
            ratio = ours.std().quantile(q).to_numpy() / base.std().quantile(q).to_numpy()
            assert np.all(np.abs(ratio - 1) <= 0.15), (variant, group, ratio)
            assert abs(ours.median().median()) <= MEDIAN_ABS
        if variant != synthetic.DEFAULT_VARIANT:
            assert not frames[schema.TRAIN_FEATURES].equals(default[schema.TRAIN_FEATURES])


def _response(variant: str, labels: np.ndarray, strength: float, dose: int, time: int):
    """A variant's mechanism response (genes, cells) for one drug's single row."""
    mech = synthetic._build_mechanisms(TINY, np.random.default_rng(0))
    part = synthetic._Part(np.array([0]), np.array([dose]), np.array([time]), np.array([2]),
                           labels[None, :TINY.n_scored], labels[None, TINY.n_scored:])
    genes, cells = synthetic._SIGNALS[variant](labels[None, :], part, mech, TINY, np.random.default_rng(1),
                                               np.array([strength]))
    return genes[0], np.broadcast_to(cells, (1, TINY.n_cells))[0]


def test_variants_differ_in_how_labels_shape_features():
    n = TINY.n_scored + TINY.n_nonscored
    a, b = np.eye(n)[0], np.eye(n)[3]
    # additive: linear in the labels and in the strength, the same at every dose and time
    g_a, _ = _response("additive", a, 1.0, 0, 0)
    g_b, _ = _response("additive", b, 1.0, 0, 0)
    assert np.allclose(_response("additive", a + b, 1.0, 0, 0)[0], g_a + g_b)
    assert np.allclose(_response("additive", a, 2.0, 1, 2)[0], 2 * g_a) and np.abs(g_a).max() > 0
    # saturating: silent below the potency threshold, bounded, sub-linear above
    assert np.all(_response("saturating", a, synthetic._THRESHOLD * 0.9, 1, 2)[0] == 0)
    big = _response("saturating", a, 50.0, 1, 2)[0]
    small = _response("saturating", a, 1.0, 1, 2)[0]
    assert np.abs(big).max() <= 1.5 and np.abs(big).max() < 0.5 * 50 * np.abs(small).max()
    # interaction: part of the response flips between 24 h and 72 h, part shows
    # only at one dose, and cell lines respond only at D2
    early, cells_low = _response("interaction", a, 1.0, 0, 0)
    late, cells_high = _response("interaction", a, 1.0, 1, 2)
    assert np.corrcoef(early, late)[0, 1] < 0.5
    assert np.all(cells_low == 0) and cells_high.min() < 0


def test_unknown_variant_is_refused():
    with pytest.raises(synthetic.MoAError, match=r"data.variant='linear': expected one of saturating, additive, interaction"):
        generate(replace(TINY, variant="linear"))


def test_heldout_test_labels_are_kept_apart_and_on_new_drugs(tmp_path):
    cfg = replace(SMALL, variant="additive")
    folder = ensure_synthetic(cfg, tmp_path)
    assert "additive" in folder.name
    assert ensure_synthetic(replace(cfg, variant="interaction"), tmp_path) != folder  # cache keyed on the variant
    labels = synthetic.heldout_test_labels(folder)
    test = pd.read_csv(folder / schema.TEST_FEATURES)
    assert list(labels.columns) == list(pd.read_csv(folder / schema.SAMPLE_SUBMISSION).columns)
    assert labels[schema.ID].tolist() == test[schema.ID].tolist()
    values = labels.drop(columns=schema.ID).to_numpy()
    assert values.sum() > 0 and values[(test[schema.CP_TYPE] == schema.CONTROL).to_numpy()].sum() == 0

    test_drug = pd.read_csv(folder / synthetic.BENCHMARK_DIR / synthetic.HELDOUT_DRUG)
    train_drug = pd.read_csv(folder / schema.TRAIN_DRUG)
    treated = (test[schema.CP_TYPE] == schema.TREATED).to_numpy()
    assert not set(test_drug.loc[treated, schema.DRUG]) & set(train_drug[schema.DRUG])  # unseen drugs
    # the vehicle is the one drug both share
    assert set(test_drug.loc[~treated, schema.DRUG]) <= set(train_drug[schema.DRUG])
    per_drug = pd.concat([test_drug[[schema.DRUG]], labels.drop(columns=schema.ID)], axis=1)
    assert (per_drug.groupby(schema.DRUG).nunique() <= 1).all().all()

    # The training reader never sees them: the data it returns hold no test labels.
    from moa_lit.data.reader import read_dataset

    data = read_dataset(folder, use_cache=False)
    assert not any(synthetic.BENCHMARK_DIR in str(v) for v in vars(data).values() if isinstance(v, (str, Path)))
    with pytest.raises(synthetic.MoAError, match="no held-out test labels"):
        synthetic.heldout_test_labels(tmp_path)
