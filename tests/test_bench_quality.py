"""The quality benchmark runs end to end across data variants when shrunk to
tiny data, and scores every setup on the held-out test drugs."""

import json

import pandas as pd
import pytest

from moa_lit.bench import quality
from moa_lit.data.synthetic import heldout_test_labels


def test_quality_benchmark_prints_the_table_across_variants(tmp_path, capsys):
    out = tmp_path / "bench"
    code = quality.main(
        [
            "--n-samples", "300", "--epochs", "1", "--folds", "2", "--small",
            "--variants", "additive,interaction",
            "--only", "prior,linear,blend",
            "--out", str(out), "--data-dir", str(tmp_path / "data"),
            "loader.batch_size=64",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    report = printed[printed.index("Quality benchmark"):]
    assert "300 rows, 2 folds" in report
    results = json.loads((out / "quality.json").read_text())["results"]
    assert set(results) == {"additive", "interaction"}
    for variant in ("additive", "interaction"):
        table = report[report.index(f"data variant: {variant}"):].split("\n\n")[0]
        lines = {line.split()[0]: line for line in table.splitlines()[3:]}
        assert list(lines) == ["prior", "linear", "blend"]
        # a setup that cannot run is reported on its row, not fatal (a blend of one run)
        assert "failed" in lines["blend"] and "expected at least two run directories" in lines["blend"]
        res = results[variant]
        folder = next((tmp_path / "data").glob(f"synthetic-{variant}-*"))
        labels = heldout_test_labels(folder)
        for name in ("linear",):
            # OOF from the run's own score file, test from its submission against the held-out labels
            scores = json.loads((out / variant / name / "scores.json").read_text())
            assert res[name]["oof"] == pytest.approx(scores["oof_logloss"])
            sub = pd.read_csv(out / variant / name / "submission.csv")
            assert res[name]["test"] == pytest.approx(quality.heldout_logloss(sub, labels))
            assert f"{res[name]['test']:.5f}" in lines[name]
            assert f"{res[name]['test'] - res[name]['oof']:+.5f}" in lines[name]
        assert res["prior"]["test"] > 0 and res["prior"]["oof"] == pytest.approx(scores["prior_logloss"])
        assert isinstance(res["blend"], str)
        ranked = sorted((r["rank"], n) for n, r in res.items() if isinstance(r, dict) and "rank" in r)
        tests = [res[n]["test"] for _, n in ranked]
        assert tests == sorted(tests) and ranked[0][0] == 1
    summary = report[report.index("mean rank on the held-out test across 2 data variant(s)"):]
    mean = json.loads((out / "quality.json").read_text())["mean_test_rank"]
    assert mean["linear"] == pytest.approx((results["additive"]["linear"]["rank"] + results["interaction"]["linear"]["rank"]) / 2)
    rows = {line.split()[0]: line.split()[1:] for line in summary.splitlines()[3:] if line.strip()}
    assert rows["linear"] == [f"{mean['linear']:.2f}", "2"]
    assert [float(r[0]) for r in rows.values()] == sorted(float(r[0]) for r in rows.values())


def test_heldout_logloss_matches_by_id_and_refuses_missing_rows():
    labels = pd.DataFrame({"sig_id": ["a", "b"], "t1": [1, 0], "t2": [0, 0]})
    good = pd.DataFrame({"sig_id": ["b", "a"], "t1": [0.0, 1.0], "t2": [0.0, 0.0]})
    assert quality.heldout_logloss(good, labels) == pytest.approx(0.0, abs=1e-12)
    wrong = good.assign(t1=[1.0, 0.0])  # swapped rows: the worst possible
    assert quality.heldout_logloss(wrong, labels) > 10
    with pytest.raises(quality.MoAError, match="does not cover every held-out test row"):
        quality.heldout_logloss(good.iloc[:1], labels)


def test_rank_ties_share_the_mean():
    assert quality.rank({"a": 0.2, "b": 0.1, "c": 0.2}) == {"a": 2.5, "b": 1.0, "c": 2.5}


@pytest.mark.parametrize("argv, message", [
    (["--only", "baseline,nope"], "unknown setup(s) ['nope']"),
    (["--variants", "linear"], "unknown data variant(s) ['linear']"),
    (["--jobs", "0"], "--jobs 0: expected a whole number >= 1"),
])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        quality.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["data=kaggle"], "the quality benchmark needs the built-in synthetic data"),
    (["cv.seed=abc"], "cv.seed='abc': expected a whole number >= 0"),
])
def test_bad_settings_stop_it_with_one_line_before_any_run(extra, message, tmp_path, capsys):
    code = quality.main(["--n-samples", "300", "--variants", "additive", "--only", "prior,linear",
                         "--out", str(tmp_path / "bench"), "--data-dir", str(tmp_path / "data"), *extra])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moa-lit: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "bench").exists()
