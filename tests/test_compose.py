"""Runs composed through Hydra's compose API, as the sweeper and notebooks do."""

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import tiny_run_overrides
from moa_lit.config import CONFIG_DIR
from moa_lit.train import train


@pytest.fixture
def compose_cfg():
    def _compose(overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR):
            return compose(config_name="train", overrides=overrides)

    yield _compose
    GlobalHydra.instance().clear()


def test_default_config_composes_to_the_documented_defaults(compose_cfg):
    cfg = compose_cfg([])
    assert cfg.cv.n_folds == 5 and cfg.cv.drug_threshold == 18 and cfg.cv.folds is None
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.data._target_.endswith("load_synthetic") and cfg.data.n_samples == 23814
    assert cfg.model.net._target_.endswith("MLP")
    gpu = compose_cfg(["trainer=gpu"])
    assert gpu.trainer.accelerator == "gpu" and "mixed" in gpu.trainer.precision


def test_composed_run_on_a_subset_of_folds(compose_cfg, tmp_path):
    cfg = compose_cfg([*tiny_run_overrides(tmp_path, n_samples=500, epochs=1), "cv.folds=[1]", f"paths.output_dir={tmp_path / 'run'}"])
    value = train(cfg)
    scores = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert value == pytest.approx(scores["oof_logloss_new_drugs"])  # the default optimized_metric
    assert scores["folds"] == [1]
    folds = pd.read_csv(tmp_path / "run" / "folds.csv")
    oof = pd.read_csv(tmp_path / "run" / "oof.csv")
    # only fold 1's rows are predicted and scored
    assert set(oof["sig_id"]) == set(folds.loc[folds["fold"] == 1, "sig_id"])
    assert scores["n_rows"] == len(oof)
    assert not (tmp_path / "run" / "models" / "seed0" / "fold0").exists()
    assert np.isfinite(oof.drop(columns="sig_id").to_numpy()).all()


def test_optimized_metric_chooses_what_train_returns(compose_cfg, tmp_path):
    from moa_lit.errors import MoAError

    base = [*tiny_run_overrides(tmp_path, n_samples=500, epochs=1), "cv.folds=[1]"]
    value = train(compose_cfg([*base, "optimized_metric=oof_logloss_treated", f"paths.output_dir={tmp_path / 'run'}"]))
    scores = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert value == pytest.approx(scores["oof_logloss_treated"]) and value != pytest.approx(scores["oof_logloss"])
    with pytest.raises(MoAError, match=r"^optimized_metric='val_loss': expected one of oof_logloss_new_drugs, oof_logloss, oof_logloss_treated$"):
        train(compose_cfg([*base, "optimized_metric=val_loss", f"paths.output_dir={tmp_path / 'refused'}"]))
    assert not (tmp_path / "refused").exists()  # refused before anything is written


@pytest.mark.parametrize(
    "override, message",
    [
        # Types and ranges as the typed settings declare them (settings.py:
        # "yes" or 2 is not a boolean) ...
        ("cv.n_folds=abc", "cv.n_folds='abc': expected a whole number >= 2"),
        ("pretrain.enabled=maybe", "pretrain.enabled='maybe': expected true or false"),
        ("pretrain.enabled=yes", "pretrain.enabled='yes': expected true or false"),
        ("allow_worse_than_prior=2", "allow_worse_than_prior=2: expected true or false"),
        ("features.pca_genes=1.5", "features.pca_genes=1.5: expected a whole number >= 0"),
        ("stack.inner_folds=1", "stack.inner_folds=1: expected a whole number >= 2"),
        ("final_model=refitted", "final_model='refitted': expected one of fold_average, refit, both"),
        ("refit.epoch_scale=-1", "refit.epoch_scale=-1.0: expected a number > 0 and <= 10"),
        ("refit.seeds=[1,1]", "refit.seeds=[1,1]: expected a list of distinct whole numbers >= 0, e.g. [0,1,2] (1 is repeated: each would train into the same folder)"),
        ("data.variant=linear", "data.variant='linear': expected one of saturating, additive, interaction"),
        ("optimized_metric=val_loss", "optimized_metric='val_loss': expected one of oof_logloss_new_drugs, oof_logloss, oof_logloss_treated"),
        ("model.net.dropout_input=1", "model.net.dropout_input=1: expected a number >= 0 and < 1"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0: expected a whole number >= 1"),
        # ... unknown keys as Hydra's schema check says them, on one line.
        ("cv.n_fold=3", "cv.n_fold: Key 'n_fold' not in 'CVSettings'; expected one of n_folds, seed, drug_threshold, folds"),
    ],
)
def test_wrong_type_or_unknown_key_is_refused_when_composed(override, message):
    from moa_lit.config import compose_checked
    from moa_lit.errors import MoAError

    with pytest.raises(MoAError) as refused:
        compose_checked([override])
    assert str(refused.value) == message


def test_schema_error_on_the_command_line_is_one_line(tmp_path):
    from conftest import run_cli

    proc = run_cli("moa_lit.train", ["loader.batch_size=big"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "moa-lit: error: loader.batch_size='big': expected a whole number >= 2"
    )
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_value_checks_name_the_setting(compose_cfg):
    from moa_lit.errors import MoAError
    from moa_lit.settings import TrainConfig, check_config

    with pytest.raises(MoAError, match=r"^stack.inner_folds=1: expected a whole number >= 2$"):
        check_config(compose_cfg(["stack.enabled=true", "stack.inner_folds=1"]), TrainConfig)
    with pytest.raises(MoAError, match=r"^cv.folds=\[5\]: expected fold numbers in 0..4 \(cv.n_folds=5\)$"):
        check_config(compose_cfg(["cv.folds=[5]"]), TrainConfig)
    with pytest.raises(MoAError, match=r"^ensemble.models.linear.net.dropout_input=1.5: expected a number >= 0 and < 1$"):
        check_config(compose_cfg(["experiment=ensemble", "ensemble.models.linear.net.dropout_input=1.5"]), TrainConfig)


def test_a_library_refusal_names_the_setting():
    from moa_lit.cli import library_error

    cfg = OmegaConf.create({"model": {"optimizer": {"_target_": "torch.optim.Adam", "lr": 0.1, "weight_decay": -1}}})
    refused = ValueError("Invalid weight_decay value: -1")
    refused.add_note("full_key: model.optimizer")  # as Hydra's instantiate notes the node
    assert str(library_error(refused, cfg)) == "model.optimizer.weight_decay=-1: Invalid weight_decay value: -1"
    other = ValueError("something else went wrong")
    other.add_note("full_key: model.optimizer")
    assert str(library_error(other, cfg)) == "model.optimizer: something else went wrong"
    assert library_error(ValueError("not from a config"), cfg) is None


def test_a_refused_job_removes_the_folders_hydra_made_only_when_empty(tmp_path, monkeypatch):
    from moa_lit import cli

    # As CheckFirst records it: tmp_path existed before Hydra made outputs/runs/<time>.
    monkeypatch.setitem(cli._EXISTED, "above", tmp_path.resolve())
    made, kept = tmp_path / "outputs" / "runs" / "t1", tmp_path / "outputs" / "runs" / "t2"
    made.mkdir(parents=True), kept.mkdir()
    (kept / "user.txt").write_text("mine\n")
    cli.remove_if_empty(str(kept))
    assert (kept / "user.txt").read_text() == "mine\n"
    cli.remove_if_empty(str(made))
    assert not made.exists() and kept.exists()  # runs/ still holds t2
    (kept / "user.txt").unlink()
    cli.remove_if_empty(str(kept))
    assert list(tmp_path.iterdir()) == []  # every folder Hydra made, none above
    cli.remove_if_empty(str(tmp_path))  # a folder that existed before is never removed
    assert tmp_path.is_dir()
