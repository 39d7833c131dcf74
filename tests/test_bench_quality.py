"""The quality ablation script runs end to end when shrunk to tiny data."""

import json

import pytest

from moa_lit.bench import quality


def test_quality_ablation_prints_the_table(tmp_path, capsys):
    out = tmp_path / "bench"
    code = quality.main(
        [
            "--n-samples", "300", "--epochs", "1", "--folds", "2", "--small",
            "--only", "prior,baseline,linear,+pretrain,blend",
            "--out", str(out), "--data-dir", str(tmp_path / "data"),
            "loader.batch_size=64",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("Quality ablation"):]
    assert "300 rows, 2 folds" in table
    lines = {line.split()[0]: line for line in table.splitlines()[3:]}
    assert list(lines) == ["prior", "baseline", "+pretrain", "linear", "blend"]
    results = json.loads((out / "quality.json").read_text())["results"]
    # every row's numbers come from the runs' own score files
    for name in ("baseline", "linear"):
        scores = json.loads((out / name / "scores.json").read_text())
        assert results[name]["all"] == pytest.approx(scores["oof_logloss"])
        assert f"{scores['oof_logloss']:.5f}" in lines[name]
    assert results["blend"]["all"] <= min(results["baseline"]["all"], results["linear"]["all"]) + 1e-12
    # a variant the data cannot support is reported on its row, not fatal (data
    # whose non-scored targets have no positive cannot be pretrained on)
    if "failed" in lines["+pretrain"]:
        assert "no target has a positive" in lines["+pretrain"]
    else:
        assert results["+pretrain"]["all"] > 0


def test_unknown_variant_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        quality.main(["--only", "baseline,nope"])
    assert exc.value.code == 2
    assert "unknown variant(s) ['nope']" in capsys.readouterr().err
