"""Model families, presets, pretraining and clipping through the real command line, on tiny data."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import compose_train, run_cli
from moa_lit.data.synthetic import SyntheticConfig, ensure_synthetic

# One epoch on a few hundred rows can score about the prior: these tests are
# about the models' plumbing, the trust check has tests of its own.
TINY = ["cv.n_folds=2", "trainer.max_epochs=1", "loader.batch_size=64", "callbacks.progress_bar.refresh_rate=0", "allow_worse_than_prior=true"]


def synthetic(tmp_path, n=400):
    return [f"data.n_samples={n}", f"data.dir={tmp_path / 'data'}"]


def read_run(run_dir):
    scores = json.loads((run_dir / "scores.json").read_text())
    oof = pd.read_csv(run_dir / "oof.csv")
    return scores, oof


def test_resnet_with_clipping_trains_through_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    args = ["model=resnet", "model.net.hidden_size=32", "predict.clip=[0.001,0.99]", *TINY, *synthetic(tmp_path)]
    proc = run_cli("moa_lit.train", [*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores, oof = read_run(run_dir)
    assert np.isfinite(scores["oof_logloss"]) and scores["n_rows"] == 400
    assert checkpoint_net(run_dir).endswith("ResNet")
    p = oof.drop(columns="sig_id").to_numpy()
    # clipped, except control rows, which stay exactly 0
    treated = (p > 0).any(axis=1)
    assert treated.any() and (~treated).any()
    assert p[treated].min() >= 0.001 and p[treated].max() <= 0.99
    sub = pd.read_csv(run_dir / "submission.csv").drop(columns="sig_id").to_numpy()
    assert sub.max() <= 0.99


def test_cnn1d_trains_through_the_same_loop(tmp_path):
    # composed in-process (the same train() the CLI calls) to spare a second interpreter start
    from moa_lit.train import train

    run_dir = tmp_path / "run"
    net = ["model=cnn1d", "model.net.channels=8", "model.net.length=8", "model.net.conv_channels=16"]
    train(compose_train([*net, *TINY, *synthetic(tmp_path), f"paths.output_dir={run_dir}"]))
    scores, oof = read_run(run_dir)
    assert np.isfinite(scores["oof_logloss"]) and len(oof) == 400
    assert checkpoint_net(run_dir).endswith("CNN1D")
    assert (run_dir / "submission.csv").is_file()


def checkpoint_net(run_dir):
    import torch

    ckpt = torch.load(run_dir / "models/seed0/fold0/best.ckpt", weights_only=False)
    return ckpt["hyper_parameters"]["net"]["_target_"]




def kaggle_folder_with_nonscored(tmp_path, n=400):
    """A Kaggle-layout folder (the synthetic generator's files, read as data=kaggle)
    with 20 scored and 12 non-scored targets."""
    folder = ensure_synthetic(SyntheticConfig(n_samples=n, seed=3, n_scored=20, n_nonscored=12), tmp_path / "kaggle")
    nonscored = pd.read_csv(folder / "train_targets_nonscored.csv")
    assert nonscored.iloc[:, 1:].to_numpy().sum(axis=0).astype(bool).any()
    return folder


def test_components_pretraining_and_stacking_on_the_kaggle_layout(tmp_path):
    folder = kaggle_folder_with_nonscored(tmp_path)
    run_dir = tmp_path / "run"
    args = [
        "experiment=baseline", "data=kaggle", f"data.dir={folder}", *TINY,
        "seeds=[0]", "model.net.hidden_size=32", "features.pca_genes=5", "features.pca_cells=3",
        "features.factor_analysis_genes=2", "features.factor_analysis_cells=1",
        "pretrain.enabled=true", "pretrain.max_epochs=1", "stack.enabled=true", "stack.inner_folds=2", "stack.max_epochs=1",
        f"hydra.run.dir={run_dir}",
    ]
    proc = run_cli("moa_lit.train", args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores, oof = read_run(run_dir)
    assert np.isfinite(scores["oof_logloss"])
    assert (run_dir / "models/seed0/fold1/stack_models.pt").is_file()
    fold_info = json.loads((run_dir / "models/seed0/fold1/fold.json").read_text())
    # only the non-scored targets with a positive in the fold's training rows are used
    nonscored = pd.read_csv(folder / "train_targets_nonscored.csv")
    folds = pd.read_csv(run_dir / "folds.csv")
    train_rows = (folds["fold"] != 1).to_numpy()
    with_positive = int((nonscored.iloc[train_rows, 1:].sum(axis=0) > 0).sum())
    assert fold_info["pretrained_targets"] == with_positive and fold_info["stacked_columns"] == with_positive
    # 772 g-* + 5 PCA + 2 FA, 100 c-* + 3 PCA + 1 FA, 5 one-hot, then the stacked columns
    assert fold_info["n_features"] == 772 + 5 + 2 + 100 + 3 + 1 + 5 + fold_info["stacked_columns"]
    assert (run_dir / "submission.csv").is_file()
    # predict reloads the stacked stage's inner models: it reproduces the submission
    import moa_lit

    predicted = moa_lit.load_run(run_dir).predict_proba(pd.read_csv(folder / "test_features.csv"))
    submission = pd.read_csv(run_dir / "submission.csv")
    assert list(predicted.columns) == list(submission.columns)
    np.testing.assert_allclose(predicted.iloc[:, 1:].to_numpy(), submission.iloc[:, 1:].to_numpy(), atol=1e-6)
    cfg = (run_dir / ".hydra/config.yaml").read_text()
    assert "enabled: true" in cfg and "pca_genes: 5" in cfg


def test_unknown_preset_is_one_line(tmp_path):
    proc = run_cli("moa_lit.train", ["experiment=xyz"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "moa-lit: error: experiment=xyz: no such experiment config; expected one of baseline, best, ensemble, linear"


def test_an_unknown_config_choice_is_one_line_and_valid_choices_pass():
    from moa_lit.config import compose_checked
    from moa_lit.errors import MoAError

    compose_checked(["model=resnet", "experiment=baseline", "features.pca_genes=3", "trainer=debug"])
    for overrides, start in (
        (["model=xyz"], "model=xyz: no such model config; expected one of cnn1d, linear, mlp, resnet, tabm"),
        (["+experiment=nope"], "experiment=nope: no such experiment config"),
    ):
        with pytest.raises(MoAError) as refused:
            compose_checked(overrides)
        assert str(refused.value).startswith(start) and "\n" not in str(refused.value)


def test_presets_compose():
    cfg = compose_train
    base = cfg(["experiment=baseline"])
    assert base.model.net._target_.endswith("MLP") and not base.pretrain.enabled and list(base.seeds) == [0]
    best = cfg(["experiment=best", "data=kaggle", "data.dir=/somewhere"])
    # the recommended preset (issue 21): MLP + linear blended, each calibrated on its nested new-drug OOF
    assert set(best.ensemble.models) == {"mlp", "linear"} and best.calibration.method == "affine"
    assert best.data._target_.endswith("load_kaggle") and best.data.dir == "/somewhere"
    # the linear model with the schedule of the plain linear script (issue 21's ablation, lin+b128x20)
    linear = cfg(["experiment=linear"])
    assert linear.model.net._target_.endswith("LinearModel") and (linear.loader.batch_size, linear.trainer.max_epochs) == (128, 20)
    # a preset is a starting point: command-line overrides still win
    assert cfg(["experiment=best", "pretrain.enabled=true"]).pretrain.enabled is True


def test_bad_clip_is_a_clear_error():
    from moa_lit.errors import MoAError
    from omegaconf import OmegaConf

    from moa_lit.settings import TrainConfig, check_config, typed

    def prediction_clip(clip):  # checked as a command checks it, then typed
        cfg = OmegaConf.create({"predict": {"clip": clip}})
        check_config(cfg, TrainConfig)
        return typed(cfg, "predict").clip_range

    assert prediction_clip(None) is None
    assert prediction_clip([0.001, 0.99]) == (0.001, 0.99)
    for bad in ([0.9, 0.1], [0.1], 0.5, [-0.1, 0.5]):
        with pytest.raises(MoAError, match="predict.clip=.*expected \\[lo, hi\\]"):
            prediction_clip(bad)
