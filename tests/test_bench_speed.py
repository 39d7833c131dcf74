"""The speed bench's sections run alone at a tiny size and print their own
block (numbers are not checked: timings on a test machine mean nothing)."""

from __future__ import annotations

import re

import pytest

from moa_lit.bench import speed


def tiny(tmp_path) -> list[str]:
    return ["--n-samples", "600", "--epochs", "1", "--rounds", "1", f"data.dir={tmp_path / 'data'}", "data.n_scored=20",
            "cv.n_folds=2", "model.net.hidden_size=64", "loader.batch_size=64", "allow_worse_than_prior=true"]


def test_sections_are_chosen_by_name():
    assert speed.split_sections(["section=concurrent,ratio", "cv.n_folds=2"]) == (["ratio", "concurrent"], ["cv.n_folds=2"])
    assert speed.split_sections([])[0] == list(speed.SECTIONS)
    with pytest.raises(SystemExit, match="section=speedy: expected some of ratio,data"):
        speed.split_sections(["section=speedy"])


def test_ratio_and_data_sections_print_their_blocks(tmp_path, capsys):
    speed.main([*tiny(tmp_path), "section=ratio,data"])
    out = capsys.readouterr().out
    assert "sections: ratio, data" in out
    assert re.search(r"^\[ratio\] lightning/plain throughput ratio: \d+\.\d{3}$", out, re.M)
    assert re.search(r"^\[data\] train_features\.csv \d+ MB parsed", out, re.M)
    assert "[default_run]" not in out and "[features]" not in out


def test_features_section_runs_the_best_preset_alone(tmp_path, capsys):
    # Fewer components than the preset's: the section's work, not the fits' size, is under test.
    speed.main([*tiny(tmp_path), "section=features", "seeds=[0,1]", "features.pca_genes=4", "features.pca_cells=2",
                "features.factor_analysis_genes=2", "features.factor_analysis_cells=1"])
    out = capsys.readouterr().out
    assert re.search(r"^\[features\] PCA \+ factor-analysis run \(2 seeds x 2 folds\): feature phase [\d.]+ s fitted once per fold", out, re.M)
    assert re.search(r"^\[features\] that run .*peak resident memory [\d,]+ MB$", out, re.M)
    assert "[ratio]" not in out
