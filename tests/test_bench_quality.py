"""The quality benchmark runs end to end across data variants when shrunk to
tiny data, and scores every setup on the held-out test drugs."""

import json

import numpy as np
import pandas as pd
import pytest

from moa_lit.bench import quality
from moa_lit.data.synthetic import SyntheticConfig, ensure_synthetic, heldout_test_labels
from moa_lit.runs.files import FOLDS
from moa_lit.runs.tables import read_run_csv


def test_quality_benchmark_prints_the_table_across_variants(tmp_path, capsys):
    out = tmp_path / "bench"
    code = quality.main(
        [
            "--n-samples", "300", "--epochs", "1", "--folds", "2", "--small",
            "--variants", "additive,gaussian_additive",
            "--only", "prior,plain_linear,plain_mlp,linear,blend",
            "--out", str(out), "--data-dir", str(tmp_path / "data"), "--cores", "1",
            "loader.batch_size=64",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    report = printed[printed.index("Quality benchmark"):]
    assert "300 rows, 2 folds" in report
    results = json.loads((out / "quality.json").read_text())["results"]
    gaussian = SyntheticConfig(n_samples=300, **quality.EXTRA_VARIANTS["gaussian_additive"])
    folders = {"additive": ensure_synthetic(SyntheticConfig(n_samples=300, variant="additive"), tmp_path / "data"),
               "gaussian_additive": ensure_synthetic(gaussian, tmp_path / "data")}
    assert len(list((tmp_path / "data").glob("synthetic-*"))) == 2  # the same folders the benchmark generated
    assert set(results) == {"additive", "gaussian_additive"}
    for variant in ("additive", "gaussian_additive"):
        table = report[report.index(f"data variant: {variant}"):].split("\n\n")[0]
        lines = {line.split()[0]: line for line in table.splitlines()[3:]}
        assert list(lines) == ["prior", "plain_linear", "plain_mlp", "linear", "blend"]
        # a setup that cannot run is reported on its row, not fatal (a blend of one run)
        assert "failed" in lines["blend"] and "expected at least two run directories" in lines["blend"]
        res = results[variant]
        labels = heldout_test_labels(folders[variant])
        for name in ("linear",):
            # OOF from the run's own score file, test from its submission against the held-out labels
            scores = json.loads((out / variant / name / "scores.json").read_text())
            # the new-drug OOF first, the all-rows one beside it
            assert res[name]["oof"] == pytest.approx(scores["oof_logloss_new_drugs"])
            assert res[name]["oof_all"] == pytest.approx(scores["oof_logloss"])
            sub = pd.read_csv(out / variant / name / "submission.csv")
            assert res[name]["test"] == pytest.approx(quality.heldout_logloss(sub, labels))
            assert f"{res[name]['test']:.5f}" in lines[name]
            assert f"{res[name]['test'] - res[name]['oof']:+.5f}" in lines[name]
        for name in ("plain_linear", "plain_mlp"):
            # the plain scripts: no OOF, scored from their submission on the same held-out rows
            sub = pd.read_csv(out / variant / name / "submission.csv")
            assert res[name]["oof"] is None and lines[name].split()[1:3] == ["-", f"{res[name]['test']:.5f}"]
            assert res[name]["test"] == pytest.approx(quality.heldout_logloss(sub, labels))
        assert res["prior"]["test"] > 0 and res["prior"]["oof"] == pytest.approx(scores["prior_logloss_new_drugs"])
        assert isinstance(res["blend"], str)
        ranked = sorted((r["rank"], n) for n, r in res.items() if isinstance(r, dict) and "rank" in r)
        tests = [res[n]["test"] for _, n in ranked]
        assert tests == sorted(tests) and ranked[0][0] == 1
    # gaussian_additive: generated with its own settings (2 rows per ordinary drug), and that is the data its run read
    drugs = pd.read_csv(folders["gaussian_additive"] / "train_drug.csv")
    assert (drugs.groupby("drug_id").size() == 2).mean() > 0.9
    assert set(read_run_csv(out / "gaussian_additive" / "linear" / FOLDS)["sig_id"]) == set(drugs["sig_id"])
    summary = report[report.index("mean rank on the held-out test across 2 data variant(s)"):]
    mean = json.loads((out / "quality.json").read_text())["mean_test_rank"]
    assert mean["linear"] == pytest.approx((results["additive"]["linear"]["rank"] + results["gaussian_additive"]["linear"]["rank"]) / 2)
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
    (["--n-samples", "-5"], "--n-samples -5: expected a whole number >= 1"),
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


def planted_folder(root, n_train=480, n_test=200, n_targets=4, seed=0):
    """Kaggle-layout files with an easy planted signal: each target (on about
    20% of treated rows) moves its own 5 genes up by 2; 10% controls, which
    carry no label and no signal. The folder and the test rows' labels."""
    rng = np.random.default_rng(seed)
    names = [f"t{j}_inhibitor" for j in range(n_targets)]
    folder = root / "planted"
    folder.mkdir()

    def part(n, prefix):
        control = rng.random(n) < 0.1
        y = (rng.random((n, n_targets)) < 0.2) & ~control[:, None]
        genes = rng.standard_normal((n, 5 * n_targets + 5))
        genes[:, :5 * n_targets] += 2.0 * np.repeat(y, 5, axis=1)
        ids = [f"id_{prefix}{i:05d}" for i in range(n)]
        feats = pd.DataFrame({"sig_id": ids, "cp_type": np.where(control, "ctl_vehicle", "trt_cp"),
                              "cp_time": rng.choice([24, 48, 72], n), "cp_dose": rng.choice(["D1", "D2"], n)})
        numeric = pd.DataFrame(np.hstack([genes, rng.standard_normal((n, 4))]),
                               columns=[f"g-{i}" for i in range(genes.shape[1])] + [f"c-{i}" for i in range(4)])
        targets = pd.DataFrame(y.astype(int), columns=names)
        targets.insert(0, "sig_id", ids)
        return pd.concat([feats, numeric], axis=1), targets

    train, train_targets = part(n_train, "a")
    test, test_targets = part(n_test, "b")
    train.to_csv(folder / "train_features.csv", index=False)
    train_targets.to_csv(folder / "train_targets_scored.csv", index=False)
    test.to_csv(folder / "test_features.csv", index=False)
    return folder, test_targets


def test_plain_scripts_beat_the_prior_on_a_planted_signal(tmp_path):
    folder, labels = planted_folder(tmp_path)
    prior = quality.heldout_logloss(quality.prior_test_predictions(folder, labels), labels)
    for name in quality.REFERENCES:
        result = quality.run_reference(name, folder, tmp_path / name, small=True, threads=1, device="cpu")
        assert result["oof"] is None and result["seconds"] > 0
        sub = pd.read_csv(tmp_path / name / "submission.csv")
        assert list(sub.columns) == list(labels.columns) and sub["sig_id"].tolist() == labels["sig_id"].tolist()
        controls = (pd.read_csv(folder / "test_features.csv")["cp_type"] == "ctl_vehicle").to_numpy()
        assert (sub.iloc[:, 1:].to_numpy()[controls] == 0).all()  # controls predicted 0
        score = quality.heldout_logloss(sub, labels)
        assert score < 0.6 * prior, (name, score, prior)


def test_ablation_rows_each_add_one_difference_to_their_base(tmp_path):
    args = quality.parse_args(["--only", "ablation", "--cores", "1"])
    assert args.only == quality.ABLATION_NAMES and {"plain_linear", "plain_mlp", "plain_linear-meta"} <= set(args.only)
    rows = {s.name: s.overrides for s in quality.ABLATION}
    for base in ("lin", "mlp"):
        steps = [n for n in rows if n.startswith(base + "+")]
        assert len(steps) >= 6
        for name in steps:  # the base's overrides, then that step's alone
            assert rows[name][: len(rows[base])] == rows[base] and len(rows[name]) > len(rows[base])
        # the whole plain recipe: every step's overrides but the quantiles (its 3 seeds are the refit's)
        combined = set(rows[base + "_plain"])
        assert "refit.seeds=[0,1,2]" in combined
        assert all(set(rows[n]) - {"refit.seeds=[0]"} <= combined for n in steps if not n.endswith(("q1000", "seeds")))
    # the meta ablation of the plain script drops exactly the five one-hot columns
    folder, _ = planted_folder(tmp_path)
    from moa_lit.bench import plain_reference

    with_meta, without = plain_reference.load(folder)[0], plain_reference.load(folder, meta=False)[0]
    assert with_meta.shape[1] - without.shape[1] == 5 and np.array_equal(with_meta[:, :-5], without)
