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
    with pytest.raises(SystemExit, match="section=speedy: expected some of ratio,members,data"):
        speed.split_sections(["section=speedy"])


def test_ratio_members_and_data_sections_print_their_blocks(tmp_path, capsys):
    speed.main([*tiny(tmp_path), "--members-epochs", "1", "section=ratio,members,data,rank_gauss"])
    out = capsys.readouterr().out
    assert "sections: ratio, members, data, rank_gauss" in out
    # RankGauss gives scikit-learn's float32 output exactly.
    assert re.search(r"^\[rank_gauss\] scikit-learn QuantileTransformer [\d.]+ s, RankGauss [\d.]+ s: [\d.]+x; largest difference 0\.0e\+00$", out, re.M)
    assert re.search(r"^\[members\] 2 fold models x 1 epochs .* batched as members [\d,]+ rows/s: \d+\.\d\dx$", out, re.M)
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


def test_batched_members_compute_the_configured_mlp():
    """Each member of member_mlp is the MLP of models/mlp.py (weight norm, batch
    norm per member): a member given an MLP's weights gives its outputs."""
    import torch

    from moa_lit.models.mlp import MLP

    torch.manual_seed(0)
    nets = [MLP(30, 7, hidden_size=16, dropout_input=0, dropout_hidden=0) for _ in range(3)]  # dropout draws differ
    batched = speed.member_mlp(nets[0], 3)
    layers = [m for m in batched if isinstance(m, speed._MemberLinear)]
    with torch.no_grad():
        for m, net in enumerate(nets):
            for layer, linear in zip(layers, [m for m in net.modules() if isinstance(m, torch.nn.Linear)]):
                layer.weight[m] = linear.parametrizations.weight.original1
                layer.g[m] = linear.parametrizations.weight.original0
                layer.bias[m, 0] = linear.bias
    x = torch.randn(3, 50, 30)
    for mode in ("train", "eval"):  # batch statistics of each member's own rows, then running ones
        out = getattr(batched, mode)()(x)
        for m, net in enumerate(nets):
            torch.testing.assert_close(out[m], getattr(net, mode)()(x[m]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("option", ["--members-epochs", "--epochs", "--rounds"])
def test_a_count_below_one_is_one_line_before_any_work(option, capsys):
    with pytest.raises(SystemExit) as exc:
        speed.main([option, "0", "section=members"])
    assert exc.value.code == 2
    assert f"{option} 0: expected a whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "settings, message",
    [
        (["loader.batch_size=512"], "loader.batch_size=512 is larger than fold 0's"),  # impossible for the data
        (["nosuchkey=1"], "nosuchkey: Key 'nosuchkey' not in"),  # Hydra refuses the override
    ],
)
def test_a_bad_setting_is_one_line_not_a_traceback(tmp_path, capsys, settings, message):
    with pytest.raises(SystemExit) as exc:
        speed.main([*tiny(tmp_path), *settings, "section=ratio"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("moa-lit:")]
    assert len(lines) == 1 and message in lines[0], err[-2000:]
