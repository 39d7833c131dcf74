"""The run report: written by every training run, rebuilt by its own command,
valid images, and numbers that agree with scores.json and the labels."""

import json
import shutil

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from moa_lit.errors import MoAError
from moa_lit.report import build_report
from moa_lit.report.build import read_report_inputs
from moa_lit.report.plots import reliability_table
from saved_run import trained_run

PNGS = ["learning_curves.png", "per_target_loss.png", "reliability.png"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return trained_run(tmp_path_factory)


def _row(text: str, label: str) -> list[str]:
    """The cells of the markdown table row whose first cell is ``label``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_training_writes_valid_figures_referenced_by_the_report(saved):
    report = saved[0] / "report"
    text = (report / "report.md").read_text()
    for name in PNGS:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        image = matplotlib.image.imread(report / name)
        assert image.shape[0] > 300 and image.shape[1] > 300 and image.std() > 0.01, name  # not blank
        assert f"]({name})" in text


def test_report_numbers_match_scores_and_labels(saved):
    run_dir, data_dir = saved
    text = (run_dir / "report" / "report.md").read_text()
    scores = json.loads((run_dir / "scores.json").read_text())

    new = _row(text, "new drugs (treated rows of drugs kept whole in their fold)")
    assert new[1:4] == [str(scores["n_new_drug_rows"]), f"{scores['oof_logloss_new_drugs']:.5f}",
                        f"{scores['prior_logloss_new_drugs']:.5f}"]
    table = [line for line in text.split("## Scores")[1].splitlines() if line.startswith("| ")]
    assert table[1].startswith("| new drugs ")  # the honest number first, under the header
    all_rows = _row(text, "all rows (controls at 0)")
    assert all_rows[1:4] == [str(scores["n_rows"]), f"{scores['oof_logloss']:.5f}", f"{scores['prior_logloss']:.5f}"]
    treated = _row(text, "treated rows")
    assert treated[1:4] == [str(scores["n_treated_rows"]), f"{scores['oof_logloss_treated']:.5f}",
                            f"{scores['prior_logloss_treated']:.5f}"]
    for fold, per in scores["per_fold"].items():
        assert _row(text, fold)[1:5] == [str(per["rows"]), f"{per['oof_logloss_new_drugs']:.5f}", f"{per['oof_logloss']:.5f}",
                                         f"{per['oof_logloss_treated']:.5f}"]

    # The worst target named first is scores.json's worst, with its positive count from the labels.
    worst = max(scores["per_target"], key=scores["per_target"].get)
    truth = pd.read_csv(data_dir / "train_targets_scored.csv")
    row = _row(text, worst)
    assert row[1] == f"{scores['per_target'][worst]:.5f}" and row[2] == str(int(truth[worst].sum()))
    worst_rows = text.split("Worst targets:")[1].split("## Calibration")[0].strip().splitlines()[2:]
    assert worst_rows[0].startswith(f"| {worst} |") and len(worst_rows) == 8

    data_section = text.split("## Data")[1].split("## Config")[0]
    assert scores["data"] and all(f"| {key} |" in data_section for key in scores["data"])
    assert "## Config" in text and "n_samples: 600" in text


def test_rebuild_from_elsewhere_gives_the_same_report(saved, tmp_path):
    copy = shutil.copytree(saved[0], tmp_path / "run")
    shutil.rmtree(copy / "report")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli("moa_lit.report", [f"run_dir={copy}"], cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (copy / "report" / "report.md").read_text() == (saved[0] / "report" / "report.md").read_text()
    assert all((copy / "report" / name).is_file() for name in PNGS)
    assert list(elsewhere.iterdir()) == []  # nothing written where it ran


@pytest.mark.parametrize("args, line", [
    ([], "moa-lit: error: run_dir is required: python -m moa_lit.report run_dir=<training run folder>"),
    (["run_dir=[1]"], "moa-lit: error: run_dir=[1]: expected a path"),
])
def test_report_without_a_run_folder_is_one_line(tmp_path, args, line):
    proc = run_cli("moa_lit.report", args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [line]
    assert list(tmp_path.iterdir()) == []


def test_run_without_logs_still_reports(saved, tmp_path):
    copy = shutil.copytree(saved[0], tmp_path / "run")
    shutil.rmtree(copy / "report")
    shutil.rmtree(copy / "logs")
    text = build_report(copy).read_text()
    assert "No per-epoch logs" in text
    assert not (copy / "report" / "learning_curves.png").exists()
    assert (copy / "report" / "reliability.png").is_file()


def test_missing_labels_file_is_named(saved, tmp_path):
    copy = shutil.copytree(saved[0], tmp_path / "run")
    (copy / "labels.csv").unlink()
    with pytest.raises(MoAError, match="labels.csv: labels.csv not found"):
        build_report(copy)


def test_reliability_table_bins_on_a_log_scale():
    pred = np.array([[5e-5, 5e-5], [0.5, 0.5], [0.6, 0.02]])
    truth = np.array([[0, 0], [1, 0], [1, 0]])
    table = reliability_table(pred, truth, n_bins=3, low=1e-4)  # bins [0, 1e-4), [1e-4, 1e-2), [1e-2, 1]
    assert table["count"].tolist() == [2, 4]
    assert table["mean_prediction"].tolist() == pytest.approx([5e-5, (0.5 + 0.5 + 0.6 + 0.02) / 4])
    assert table["observed_rate"].tolist() == pytest.approx([0.0, 0.5])
    assert table["positives"].tolist() == [0, 2]


def test_labels_are_matched_to_oof_rows_by_sig_id(saved, tmp_path):
    copy = shutil.copytree(saved[0], tmp_path / "run")
    expected = read_report_inputs(copy).labels
    labels = pd.read_csv(copy / "labels.csv", dtype=str, keep_default_na=False)
    labels.iloc[::-1].to_csv(copy / "labels.csv", index=False)
    assert expected.sum() > 0
    np.testing.assert_array_equal(read_report_inputs(copy).labels, expected)
    labels.iloc[1:].to_csv(copy / "labels.csv", index=False)
    with pytest.raises(MoAError, match=f"no row for sig_id {labels['sig_id'].iloc[0]}"):
        read_report_inputs(copy)
