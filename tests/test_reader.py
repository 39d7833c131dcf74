"""Tests of the data reader and its parse cache on tiny Kaggle-layout folders.

Each folder is written by `kaggle_frames` / `write_folder` below (8 genes,
4 cells, 40 train rows, 5 scored and 3 non-scored targets, 7 drugs), then one
file is broken the way a user's file could be; the test checks that the
one-line MoAError names the file and the column or row.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moa_lit.data import reader
from moa_lit.data.cache import FOLDER_NAME
from moa_lit.data.reader import read_dataset, read_features
from moa_lit.errors import MoAError
from moa_lit.schema import (
    CONTROL,
    SAMPLE_SUBMISSION,
    TEST_FEATURES,
    TRAIN_DRUG,
    TRAIN_FEATURES,
    TRAIN_TARGETS_NONSCORED,
    TRAIN_TARGETS_SCORED,
    TREATED,
    FeatureLayout,
)

N_GENES, N_CELLS = 8, 4
LAYOUT = FeatureLayout.kaggle(N_GENES, N_CELLS)
SCORED = ["alpha_agonist", "beta_blocker", "gamma_inhibitor", "delta_antagonist", "epsilon_activator"]
NONSCORED = ["x_agonist", "y_blocker", "z_inhibitor"]
N_CONTROLS, N_DRUGS, ROWS_PER_DRUG = 4, 6, 6
N_ROWS = N_CONTROLS + N_DRUGS * ROWS_PER_DRUG  # 40
N_TEST = 10
ALL_FILES = [TRAIN_FEATURES, TRAIN_TARGETS_SCORED, TRAIN_TARGETS_NONSCORED, TRAIN_DRUG, TEST_FEATURES, SAMPLE_SUBMISSION]


# -- building folders ----------------------------------------------------------------


def _features(ids: list[str], controls: int, rng: np.random.Generator) -> pd.DataFrame:
    n = len(ids)
    frame = pd.DataFrame(
        {
            "sig_id": ids,
            "cp_type": [CONTROL] * controls + [TREATED] * (n - controls),
            "cp_time": rng.choice([24, 48, 72], n),
            "cp_dose": rng.choice(["D1", "D2"], n),
        }
    )
    values = rng.standard_normal((n, len(LAYOUT.numeric))).round(4)
    return pd.concat([frame, pd.DataFrame(values, columns=LAYOUT.numeric)], axis=1)


def _labels(ids: list[str], drugs: list[str], names: list[str]) -> pd.DataFrame:
    """Rows of one drug share labels; drug k has target k mod len(names); controls none."""
    labels = np.zeros((len(ids), len(names)), dtype=int)
    for row, drug in enumerate(drugs):
        if drug.startswith("drug"):
            labels[row, int(drug[4:]) % len(names)] = 1
    return pd.concat([pd.DataFrame({"sig_id": ids}), pd.DataFrame(labels, columns=names)], axis=1)


def kaggle_frames(seed: int = 0) -> dict[str, pd.DataFrame]:
    """A valid tiny dataset: every file of the Kaggle layout as a DataFrame."""
    rng = np.random.default_rng(seed)
    ids = [f"id_{i:09x}" for i in rng.choice(16**9, N_ROWS, replace=False)]
    drugs = ["cacb2b860"] * N_CONTROLS + [f"drug{k}" for k in range(N_DRUGS) for _ in range(ROWS_PER_DRUG)]
    test_ids = [f"id_{i:09x}" for i in rng.choice(16**9, N_TEST, replace=False) + 16**9]
    submission = pd.DataFrame(0.5, index=range(N_TEST), columns=SCORED)
    return {
        TRAIN_FEATURES: _features(ids, N_CONTROLS, rng),
        TRAIN_TARGETS_SCORED: _labels(ids, drugs, SCORED),
        TRAIN_TARGETS_NONSCORED: _labels(ids, drugs, NONSCORED),
        TRAIN_DRUG: pd.DataFrame({"sig_id": ids, "drug_id": drugs}),
        TEST_FEATURES: _features(test_ids, 1, rng),
        SAMPLE_SUBMISSION: pd.concat([pd.DataFrame({"sig_id": test_ids}), submission], axis=1),
    }


def write_folder(folder: Path, frames: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(folder / name, index=False)
    return folder


@pytest.fixture
def frames() -> dict[str, pd.DataFrame]:
    return kaggle_frames()


@pytest.fixture
def data_dir(tmp_path: Path, frames) -> Path:
    return write_folder(tmp_path / "lish-moa", frames)


def read(folder: Path, **options) -> reader.MoAData:
    return read_dataset(folder, n_genes=N_GENES, n_cells=N_CELLS, **options)


def expect_error(folder: Path, pattern: str, **options) -> str:
    """Reading fails with a one-line MoAError that matches `pattern`."""
    with pytest.raises(MoAError, match=pattern) as info:
        read(folder, **options)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


def edit_lines(path: Path, edit) -> None:
    """Rewrite a CSV file's text: `edit` gets and returns the list of lines."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def set_cell(path: Path, row: int, column: str, text: str) -> None:
    """Put `text` into a cell; `row` is 0-based below the header."""

    def edit(lines):
        position = lines[0].split(",").index(column)
        fields = lines[row + 1].split(",")
        fields[position] = text
        lines[row + 1] = ",".join(fields)
        return lines

    edit_lines(path, edit)


def warnings_of(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


# -- a valid folder ---------------------------------------------------------------------


def test_reads_a_valid_folder(data_dir, frames, caplog):
    caplog.set_level(logging.WARNING, logger="moa_lit.data")
    data = read(data_dir)

    assert list(data.train.columns) == LAYOUT.columns
    assert data.train["cp_time"].dtype == np.int64
    assert (data.train[LAYOUT.numeric].dtypes == np.float32).all()
    np.testing.assert_allclose(data.train[LAYOUT.numeric], frames[TRAIN_FEATURES][LAYOUT.numeric], rtol=1e-6)
    assert data.train["sig_id"].tolist() == frames[TRAIN_FEATURES]["sig_id"].tolist()

    assert data.scored_names == SCORED and list(data.nonscored.columns) == NONSCORED
    assert (data.scored.dtypes == np.int8).all() and (data.nonscored.dtypes == np.int8).all()
    np.testing.assert_array_equal(data.scored, frames[TRAIN_TARGETS_SCORED][SCORED])
    assert data.drug.tolist() == frames[TRAIN_DRUG]["drug_id"].tolist()
    assert list(data.test.columns) == LAYOUT.columns and len(data.test) == N_TEST
    assert data.sample_submission_columns == ["sig_id", *SCORED]
    assert data.train_is_control.dtype == bool and data.train_is_control.sum() == N_CONTROLS
    assert data.test_is_control.sum() == 1
    assert data.layout == LAYOUT

    fingerprint = data.fingerprint
    assert set(ALL_FILES) <= set(fingerprint)
    assert fingerprint[TRAIN_FEATURES]["bytes"] == (data_dir / TRAIN_FEATURES).stat().st_size
    assert "mtime_ns" in fingerprint[TRAIN_FEATURES]
    assert (fingerprint["rows"], fingerprint["n_scored"], fingerprint["n_nonscored"]) == (N_ROWS, 5, 3)
    assert fingerprint["n_drugs"] == N_DRUGS + 1 and fingerprint["test_rows"] == N_TEST
    assert warnings_of(caplog) == []


def test_optional_files_may_be_absent(data_dir):
    for name in (TRAIN_TARGETS_NONSCORED, TEST_FEATURES, SAMPLE_SUBMISSION):
        (data_dir / name).unlink()
    data = read(data_dir)
    assert data.nonscored is None
    assert data.test is None and data.test_is_control is None
    assert data.sample_submission_columns is None


# -- folder and files -----------------------------------------------------------------------


def test_missing_folder(tmp_path):
    expect_error(tmp_path / "nowhere", r"data folder not found: .*nowhere")


def test_data_path_that_is_a_zip_file(tmp_path):
    archive = tmp_path / "lish-moa.zip"
    archive.write_bytes(b"PK")
    expect_error(archive, r"is a file, not a folder: .*lish-moa\.zip \(unzip it first\)")


@pytest.mark.parametrize("name", [TRAIN_FEATURES, TRAIN_TARGETS_SCORED])
def test_missing_required_file_lists_the_folder(data_dir, name):
    (data_dir / name).unlink()
    message = expect_error(data_dir, rf"^{re.escape(name)} not found in .*the folder holds: ")
    assert SAMPLE_SUBMISSION in message


def test_missing_file_in_parent_folder_points_to_the_data(data_dir):
    expect_error(data_dir.parent, rf"{TRAIN_FEATURES} not found in .*it is in .*lish-moa: use that folder")


@pytest.mark.parametrize("name", ALL_FILES)
def test_empty_file(data_dir, name):
    (data_dir / name).write_bytes(b"")
    expect_error(data_dir, rf"^{re.escape(name)}: file is empty \(0 bytes\)")


@pytest.mark.parametrize("name", [n for n in ALL_FILES if n != SAMPLE_SUBMISSION])
def test_header_only_file(data_dir, name):
    edit_lines(data_dir / name, lambda lines: lines[:1])
    expect_error(data_dir, rf"^{re.escape(name)}: has a header but no data rows")


# -- headers ----------------------------------------------------------------------------------


def test_missing_columns_are_named(data_dir, frames):
    frames[TRAIN_FEATURES].drop(columns=["g-3", "g-4", "cp_dose"]).to_csv(data_dir / TRAIN_FEATURES, index=False)
    expect_error(data_dir, r"^train_features\.csv: header does not match .*missing 3 \('cp_dose', 'g-3', 'g-4'\)")


def test_unexpected_column_is_named(data_dir, frames):
    frames[TRAIN_FEATURES].assign(note="x").to_csv(data_dir / TRAIN_FEATURES, index=False)
    expect_error(data_dir, r"^train_features\.csv: header does not match .*unexpected 1 \('note'\)")


def test_layout_mismatch_names_the_expected_counts(data_dir):
    with pytest.raises(MoAError, match=r"missing 2 \('g-8', 'g-9'\).*\(n_genes=10, n_cells=4\)"):
        read_dataset(data_dir, n_genes=10, n_cells=N_CELLS)


def test_semicolon_separated_file_gets_a_hint(data_dir, frames):
    frames[TRAIN_FEATURES].to_csv(data_dir / TRAIN_FEATURES, index=False, sep=";")
    expect_error(data_dir, r"train_features\.csv: .*seems to use ';' as separator")


@pytest.mark.parametrize("name", [TRAIN_FEATURES, TRAIN_TARGETS_SCORED, SAMPLE_SUBMISSION])
def test_duplicate_column_name(data_dir, name):
    def duplicate_third(lines):
        header = lines[0].split(",")
        header[3] = header[2]
        return [",".join(header), *lines[1:]]

    edit_lines(data_dir / name, duplicate_third)
    expect_error(data_dir, rf"^{re.escape(name)}: duplicate column name '[\w-]+' \(columns 3 and 4\)")


def test_reordered_columns_are_put_in_layout_order(data_dir, frames):
    features = frames[TRAIN_FEATURES]
    shuffled = list(np.random.default_rng(1).permutation(features.columns))
    features[shuffled].to_csv(data_dir / TRAIN_FEATURES, index=False)
    data = read(data_dir)
    assert list(data.train.columns) == LAYOUT.columns
    np.testing.assert_allclose(data.train[LAYOUT.numeric], features[LAYOUT.numeric], rtol=1e-6)


def test_targets_file_without_sig_id(data_dir, frames):
    frames[TRAIN_TARGETS_SCORED].rename(columns={"sig_id": "id"}).to_csv(data_dir / TRAIN_TARGETS_SCORED, index=False)
    expect_error(data_dir, r"^train_targets_scored\.csv: no 'sig_id' column")


# -- feature values ----------------------------------------------------------------------------


def test_non_numeric_feature_names_column_row_and_value(data_dir, frames):
    set_cell(data_dir / TRAIN_FEATURES, 17, "g-7", "abc")
    sig_id = frames[TRAIN_FEATURES]["sig_id"][17]
    expect_error(
        data_dir,
        rf"^train_features\.csv: column 'g-7' has non-numeric value 'abc' at row 18 \(sig_id {sig_id}\); expected a float$",
    )


@pytest.mark.parametrize(
    "text, found",
    [("", "a missing value"), ("nan", "a missing value"), ("inf", "an infinite value"), ("-inf", "an infinite value")],
)
def test_missing_or_infinite_feature(data_dir, text, found):
    set_cell(data_dir / TRAIN_FEATURES, 5, "c-2", text)
    expect_error(data_dir, rf"^train_features\.csv: column 'c-2' has {found}.* at row 6 .*expected a finite float")


def test_short_row_is_a_missing_value(data_dir):
    edit_lines(data_dir / TRAIN_FEATURES, lambda lines: [*lines[:10], lines[10].rsplit(",", 1)[0], *lines[11:]])
    expect_error(data_dir, r"^train_features\.csv: column 'c-3' has a missing value .* at row 10 ")


def test_long_row_names_its_line(data_dir):
    edit_lines(data_dir / TRAIN_FEATURES, lambda lines: [*lines[:10], lines[10] + ",1.0", *lines[11:]])
    expect_error(data_dir, r"^train_features\.csv: cannot parse as CSV: .*line 11")


@pytest.mark.parametrize(
    "column, text, shown",
    [
        ("cp_type", "trt", "'trt'"),
        ("cp_type", "", "a missing value"),
        ("cp_time", "36", "36"),
        ("cp_time", "24.5", "24.5"),
        ("cp_time", "abc", "'abc'"),
        ("cp_dose", "D3", "'D3'"),
    ],
)
def test_bad_metadata_value(data_dir, frames, column, text, shown):
    set_cell(data_dir / TRAIN_FEATURES, 7, column, text)
    sig_id = frames[TRAIN_FEATURES]["sig_id"][7]
    prefix = "has a missing value" if shown == "a missing value" else f"has value {re.escape(shown)}"
    expect_error(data_dir, rf"^train_features\.csv: column '{column}' {prefix} at row 8 \(sig_id {sig_id}\); expected one of ")


def test_integral_float_cp_time_is_accepted(data_dir):
    set_cell(data_dir / TRAIN_FEATURES, 3, "cp_time", "48.0")
    data = read(data_dir)
    assert data.train["cp_time"][3] == 48 and data.train["cp_time"].dtype == np.int64


# -- sig_id --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [TRAIN_FEATURES, TRAIN_TARGETS_SCORED, TRAIN_TARGETS_NONSCORED, TRAIN_DRUG, TEST_FEATURES])
def test_duplicate_sig_id_names_both_rows(data_dir, frames, name):
    sig_id = frames[name]["sig_id"][2]
    set_cell(data_dir / name, 6, "sig_id", sig_id)
    expect_error(data_dir, rf"^{re.escape(name)}: duplicate sig_id {sig_id} at rows 3 and 7")


def test_missing_sig_id(data_dir):
    set_cell(data_dir / TRAIN_FEATURES, 4, "sig_id", "")
    expect_error(data_dir, r"^train_features\.csv: missing sig_id at row 5")


@pytest.mark.parametrize("name", [TRAIN_TARGETS_SCORED, TRAIN_TARGETS_NONSCORED, TRAIN_DRUG])
def test_rows_missing_from_a_train_file(data_dir, frames, name):
    frames[name].drop(index=[3, 4]).to_csv(data_dir / name, index=False)
    sig_id = frames[name]["sig_id"][3]
    expect_error(data_dir, rf"^{re.escape(name)}: rows do not match train_features\.csv: 2 sig_id\(s\) .* missing here \(e\.g\. {sig_id}\)")


@pytest.mark.parametrize("name", [TRAIN_TARGETS_SCORED, TRAIN_TARGETS_NONSCORED, TRAIN_DRUG])
def test_extra_rows_in_a_train_file(data_dir, frames, name):
    set_cell(data_dir / name, 0, "sig_id", "id_stranger")
    expect_error(data_dir, rf"^{re.escape(name)}: rows do not match .*1 sig_id\(s\) here are not in train_features\.csv \(e\.g\. id_stranger\)")


def test_reordered_target_and_drug_rows_are_aligned_to_train(data_dir, frames):
    order = np.random.default_rng(2).permutation(N_ROWS)
    for name in (TRAIN_TARGETS_SCORED, TRAIN_TARGETS_NONSCORED, TRAIN_DRUG):
        frames[name].iloc[order].to_csv(data_dir / name, index=False)
    data = read(data_dir)
    np.testing.assert_array_equal(data.scored, kaggle_frames()[TRAIN_TARGETS_SCORED][SCORED])
    np.testing.assert_array_equal(data.nonscored, kaggle_frames()[TRAIN_TARGETS_NONSCORED][NONSCORED])
    assert data.drug.tolist() == kaggle_frames()[TRAIN_DRUG]["drug_id"].tolist()
    assert data.scored.index.equals(data.train.index)


def test_missing_drug_id(data_dir):
    set_cell(data_dir / TRAIN_DRUG, 9, "drug_id", "")
    expect_error(data_dir, r"^train_drug\.csv: missing drug_id at row 10 ")


# -- target values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, found",
    [("2", "has value 2"), ("", "has a missing value"), ("yes", "has non-numeric value 'yes'"), ("-1", "has value -1")],
)
def test_target_that_is_not_0_or_1(data_dir, frames, text, found):
    set_cell(data_dir / TRAIN_TARGETS_SCORED, 11, "gamma_inhibitor", text)
    sig_id = frames[TRAIN_FEATURES]["sig_id"][11]
    expect_error(
        data_dir,
        rf"^train_targets_scored\.csv: (target|column) 'gamma_inhibitor' {found} at row 12 \(sig_id {sig_id}\); expected 0 or 1$",
    )


def test_targets_written_as_floats_are_accepted(data_dir, frames):
    frames[TRAIN_TARGETS_NONSCORED].astype({name: float for name in NONSCORED}).to_csv(
        data_dir / TRAIN_TARGETS_NONSCORED, index=False
    )
    data = read(data_dir)
    assert (data.nonscored.dtypes == np.int8).all()
    np.testing.assert_array_equal(data.nonscored, frames[TRAIN_TARGETS_NONSCORED][NONSCORED])


# -- test features and sample submission -----------------------------------------------------------


def test_test_columns_differ_from_train(data_dir, frames):
    frames[TEST_FEATURES].drop(columns=["g-1"]).assign(extra=1).to_csv(data_dir / TEST_FEATURES, index=False)
    expect_error(data_dir, r"^test_features\.csv: columns differ from train_features\.csv: missing 1 \('g-1'\); unexpected 1 \('extra'\)")


def test_bad_value_in_test_features(data_dir):
    set_cell(data_dir / TEST_FEATURES, 2, "cp_dose", "high")
    expect_error(data_dir, r"^test_features\.csv: column 'cp_dose' has value 'high' at row 3 ")


def test_sample_submission_missing_a_target(data_dir, frames):
    frames[SAMPLE_SUBMISSION].drop(columns=["beta_blocker"]).to_csv(data_dir / SAMPLE_SUBMISSION, index=False)
    expect_error(data_dir, r"^sample_submission\.csv: columns differ from .*train_targets_scored\.csv: missing 1 \('beta_blocker'\)")


def test_sample_submission_targets_in_another_order(data_dir, frames):
    columns = ["sig_id", *reversed(SCORED)]
    frames[SAMPLE_SUBMISSION][columns].to_csv(data_dir / SAMPLE_SUBMISSION, index=False)
    expect_error(data_dir, r"^sample_submission\.csv: .*another order \(column 2 is 'epsilon_activator', expected 'alpha_agonist'\)")


# -- warnings ------------------------------------------------------------------------------------


def test_scored_target_without_positive_warns(data_dir, frames, caplog):
    frames[TRAIN_TARGETS_SCORED].assign(beta_blocker=0).to_csv(data_dir / TRAIN_TARGETS_SCORED, index=False)
    data = read(data_dir)
    assert data.scored["beta_blocker"].sum() == 0
    (message,) = warnings_of(caplog)
    assert re.match(r"train_targets_scored\.csv: 1 .*no positive \('beta_blocker'\); its predictions will be near 0", message)


def test_test_ids_seen_in_train_warn(data_dir, frames, caplog):
    sig_id = frames[TRAIN_FEATURES]["sig_id"][20]
    set_cell(data_dir / TEST_FEATURES, 0, "sig_id", sig_id)
    set_cell(data_dir / SAMPLE_SUBMISSION, 0, "sig_id", sig_id)
    read(data_dir)
    (message,) = warnings_of(caplog)
    assert re.match(rf"test_features\.csv: 1 sig_id\(s\) also appear in train_features\.csv \(e\.g\. {sig_id}\)", message)


def test_control_rows_with_a_target_warn(data_dir, frames, caplog):
    set_cell(data_dir / TRAIN_TARGETS_SCORED, 1, "delta_antagonist", "1")
    data = read(data_dir)
    assert data.scored["delta_antagonist"][1] == 1  # reported, not changed
    (message,) = warnings_of(caplog)
    sig_id = frames[TRAIN_FEATURES]["sig_id"][1]
    assert re.match(rf"train_targets_scored\.csv: 1 control row\(s\) .*\(e\.g\. sig_id {sig_id}\); they are treated as no-MoA", message)


def test_missing_drug_file_warns_once(data_dir, caplog):
    (data_dir / TRAIN_DRUG).unlink()
    data = read(data_dir)
    assert data.drug is None and data.fingerprint["n_drugs"] is None
    (message,) = warnings_of(caplog)
    assert "folds cannot be drug-aware" in message and "row" in message and "\n" not in message


# -- text formats ----------------------------------------------------------------------------------


def test_crlf_bom_and_padded_header_names(data_dir, frames):
    expected = read(data_dir, use_cache=False)
    for name in ALL_FILES:
        path = data_dir / name
        lines = path.read_text().splitlines()
        lines[0] = " , ".join(lines[0].split(","))  # ' g-1 ' style names
        path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    data = read(data_dir)
    pd.testing.assert_frame_equal(data.train, expected.train)
    pd.testing.assert_frame_equal(data.scored, expected.scored)
    pd.testing.assert_frame_equal(data.test, expected.test)
    assert data.sample_submission_columns == expected.sample_submission_columns


@pytest.mark.parametrize("suffix", [".gz", ".zip"])
def test_compressed_files(data_dir, suffix):
    expected = read(data_dir, use_cache=False)
    for name in ALL_FILES:
        plain = data_dir / name
        packed = data_dir / (name + suffix)
        if suffix == ".gz":
            packed.write_bytes(gzip.compress(plain.read_bytes()))
        else:
            with zipfile.ZipFile(packed, "w") as archive:
                archive.write(plain, arcname=name)
        plain.unlink()
    data = read(data_dir)
    pd.testing.assert_frame_equal(data.train, expected.train)
    pd.testing.assert_frame_equal(data.nonscored, expected.nonscored)
    pd.testing.assert_series_equal(data.drug, expected.drug)
    assert data.fingerprint[TRAIN_FEATURES]["file"] == TRAIN_FEATURES + suffix


def test_bad_value_in_a_compressed_file_is_still_located(data_dir, frames):
    set_cell(data_dir / TRAIN_FEATURES, 17, "g-2", "x")
    plain = data_dir / TRAIN_FEATURES
    (data_dir / (TRAIN_FEATURES + ".gz")).write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    expect_error(data_dir, r"^train_features\.csv\.gz: column 'g-2' has non-numeric value 'x' at row 18 ")


def test_file_that_is_not_utf8_names_its_line(data_dir):
    path = data_dir / TRAIN_DRUG
    path.write_bytes(path.read_bytes().replace(b"drug1", b"dr\xe9g1", 1))
    expect_error(data_dir, r"^train_drug\.csv: line \d+ is not UTF-8 text \(byte 0xe9 ")


def test_targets_saved_with_an_index_column(data_dir, frames):
    frames[TRAIN_TARGETS_SCORED].to_csv(data_dir / TRAIN_TARGETS_SCORED)  # pandas' default index=True
    expect_error(data_dir, r"^train_targets_scored\.csv: column 1 has no name \(an index column saved by pandas")


def test_damaged_gzip_file(data_dir):
    plain = data_dir / TRAIN_FEATURES
    packed = gzip.compress(plain.read_bytes())
    (data_dir / (TRAIN_FEATURES + ".gz")).write_bytes(packed[: len(packed) // 2])
    plain.unlink()
    expect_error(data_dir, r"^train_features\.csv\.gz: cannot parse as CSV: .*ended")


def test_zip_with_two_files(data_dir):
    plain = data_dir / TRAIN_FEATURES
    with zipfile.ZipFile(data_dir / (TRAIN_FEATURES + ".zip"), "w") as archive:
        archive.write(plain, arcname="a.csv")
        archive.write(plain, arcname="b.csv")
    plain.unlink()
    expect_error(data_dir, r"^train_features\.csv\.zip: a zip file must hold exactly one CSV, found 2 \(a\.csv, b\.csv\)")


def test_read_features_names_a_user_file(tmp_path, frames):
    path = tmp_path / "new_samples.csv"
    frames[TEST_FEATURES].to_csv(path, index=False)
    assert len(read_features(path, LAYOUT)) == N_TEST
    set_cell(path, 0, "g-0", "?")
    with pytest.raises(MoAError, match=r"^new_samples\.csv: column 'g-0' has non-numeric value '\?' at row 1 "):
        read_features(path, LAYOUT)


# -- parse cache -----------------------------------------------------------------------------------


@pytest.fixture
def parse_calls(monkeypatch) -> list[str]:
    """Names of the files parsed into a frame the cache can hold (the sample
    submission's sig_ids are read on each read)."""
    calls: list[str] = []
    parse = reader._parse_rows

    def spy(path, *args, **kwargs):
        calls.append(Path(path).name)
        return parse(path, *args, **kwargs)

    monkeypatch.setattr(reader, "_parse_rows", spy)
    return calls


def assert_same_data(left: reader.MoAData, right: reader.MoAData) -> None:
    pd.testing.assert_frame_equal(left.train, right.train)
    pd.testing.assert_frame_equal(left.scored, right.scored)
    pd.testing.assert_frame_equal(left.nonscored, right.nonscored)
    pd.testing.assert_series_equal(left.drug, right.drug)
    pd.testing.assert_frame_equal(left.test, right.test)


def test_second_read_comes_from_the_cache(data_dir, parse_calls):
    first = read(data_dir)
    assert len(parse_calls) == 5 and (data_dir / FOLDER_NAME).is_dir()
    parse_calls.clear()
    second = read(data_dir)
    assert parse_calls == []
    assert_same_data(first, second)


def test_touched_but_unchanged_file_comes_from_the_cache(data_dir, parse_calls):
    read(data_dir)
    parse_calls.clear()
    path = data_dir / TRAIN_TARGETS_SCORED
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    read(data_dir)
    assert parse_calls == []  # keyed on content, not on the modification time


def test_changed_content_with_same_size_and_mtime_is_parsed_again(data_dir, parse_calls):
    first = read(data_dir)
    path = data_dir / TRAIN_FEATURES
    stat = path.stat()
    lines = path.read_text().splitlines(keepends=True)
    cells = lines[1].split(",")
    g0 = 4  # sig_id, cp_type, cp_time, cp_dose, then g-0
    cells[g0] = cells[g0][:-1] + ("1" if cells[g0][-1] != "1" else "2")  # one digit: same byte count
    lines[1] = ",".join(cells)
    path.write_text("".join(lines))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    parse_calls.clear()
    second = read(data_dir)
    assert parse_calls == [TRAIN_FEATURES]
    assert second.train["g-0"][0] != first.train["g-0"][0]
    assert second.fingerprint[TRAIN_FEATURES]["sha1"] != first.fingerprint[TRAIN_FEATURES]["sha1"]


def test_sample_submission_with_other_ids_is_refused(data_dir, frames):
    set_cell(data_dir / SAMPLE_SUBMISSION, 2, "sig_id", "id_not_in_test")
    message = expect_error(data_dir, r"^sample_submission\.csv: its sig_ids differ from test_features\.csv's: "
                                     r"1 not in test_features\.csv \(e\.g\. id_not_in_test\); 1 of test_features\.csv missing")
    assert len(message) < 400


def test_sample_submission_row_order_is_kept(data_dir, frames):
    shuffled = frames[SAMPLE_SUBMISSION].iloc[::-1]
    shuffled.to_csv(data_dir / SAMPLE_SUBMISSION, index=False)
    data = read(data_dir)
    assert data.sample_submission_ids.tolist() == shuffled["sig_id"].tolist()


def test_changed_file_gives_new_data_and_replaces_its_entry(data_dir, parse_calls):
    read(data_dir)
    set_cell(data_dir / TRAIN_FEATURES, 0, "g-0", "12.5")
    data = read(data_dir)
    assert data.train["g-0"][0] == 12.5
    entries = list((data_dir / FOLDER_NAME).glob(f"{TRAIN_FEATURES}-*.parquet"))
    assert len(entries) == 1


def test_damaged_cache_entry_is_parsed_again(data_dir, parse_calls):
    first = read(data_dir)
    for entry in (data_dir / FOLDER_NAME).glob("*.parquet"):
        entry.write_bytes(b"not parquet")
    parse_calls.clear()
    assert_same_data(first, read(data_dir))
    assert len(parse_calls) == 5


def test_bad_file_is_not_cached(data_dir):
    set_cell(data_dir / TRAIN_FEATURES, 1, "g-1", "oops")
    expect_error(data_dir, r"non-numeric value 'oops'")
    expect_error(data_dir, r"non-numeric value 'oops'")  # still checked, not served from a cache


def test_use_cache_false_writes_nothing(data_dir, parse_calls):
    read(data_dir, use_cache=False)
    read(data_dir, use_cache=False)
    assert not (data_dir / FOLDER_NAME).exists()
    assert len(parse_calls) == 10


def test_explicit_cache_dir(data_dir, tmp_path, parse_calls):
    cache_dir = tmp_path / "my-cache"
    read(data_dir, cache_dir=cache_dir)
    parse_calls.clear()
    read(data_dir, cache_dir=cache_dir)
    assert parse_calls == [] and len(list(cache_dir.glob("*.parquet"))) == 5
    assert not (data_dir / FOLDER_NAME).exists()


def test_unwritable_data_dir_falls_back_to_home_cache(data_dir, tmp_path, monkeypatch, parse_calls):
    # A file where the cache folder would go blocks it even for root, for
    # whom a read-only mode bit would not.
    (data_dir / FOLDER_NAME).write_text("")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    read(data_dir)
    parse_calls.clear()
    read(data_dir)
    assert parse_calls == []
    assert len(list((tmp_path / "home" / ".cache" / "moa_lit").glob("*/*.parquet"))) == 5


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write to a read-only folder")
def test_read_only_data_dir_falls_back_to_home_cache(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data_dir.chmod(0o555)
    try:
        read(data_dir)
    finally:
        data_dir.chmod(0o755)
    assert list((tmp_path / "home" / ".cache" / "moa_lit").glob("*/*.parquet"))


def test_no_writable_cache_folder_still_reads(data_dir, tmp_path, monkeypatch, parse_calls):
    (data_dir / FOLDER_NAME).write_text("")
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    monkeypatch.setenv("HOME", str(home))
    read(data_dir)
    read(data_dir)
    assert len(parse_calls) == 10


# -- the real label files, where this checkout sits beside ../shared ------------------------------

REAL_LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lish-moa-labels"


@pytest.mark.skipif(not REAL_LABELS.is_dir(), reason="../shared/data/lish-moa-labels is not beside this checkout")
def test_real_label_files_read_as_documented():
    """Counts measured on the real label files beside the checkout: the reader takes the real (zipped) files as they are."""
    scored = reader.read_targets(REAL_LABELS / (TRAIN_TARGETS_SCORED + ".zip"))
    nonscored = reader.read_targets(REAL_LABELS / (TRAIN_TARGETS_NONSCORED + ".zip"))
    drug = reader.read_drug(REAL_LABELS / (TRAIN_DRUG + ".zip"))
    assert scored.shape == (23814, 1 + 206) and int(scored.iloc[:, 1:].to_numpy().sum()) == 16844
    assert nonscored.shape == (23814, 1 + 402) and int((nonscored.iloc[:, 1:].sum() == 0).sum()) == 71
    assert drug["drug_id"].nunique() == 3289
    assert scored["sig_id"].equals(drug["sig_id"]) and scored["sig_id"].equals(nonscored["sig_id"])
