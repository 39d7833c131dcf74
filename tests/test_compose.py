"""Runs composed through Hydra's compose API, as the sweeper and notebooks do."""

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

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
    assert value == pytest.approx(scores["oof_logloss"])
    assert scores["folds"] == [1]
    folds = pd.read_csv(tmp_path / "run" / "folds.csv")
    oof = pd.read_csv(tmp_path / "run" / "oof.csv")
    # only fold 1's rows are predicted and scored
    assert set(oof["sig_id"]) == set(folds.loc[folds["fold"] == 1, "sig_id"])
    assert scores["n_rows"] == len(oof)
    assert not (tmp_path / "run" / "models" / "seed0" / "fold0").exists()
    assert np.isfinite(oof.drop(columns="sig_id").to_numpy()).all()
