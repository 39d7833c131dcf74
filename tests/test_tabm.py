"""model=tabm (moa_lit/models/tabm.py): k members sharing weights, each member's
loss on the same batch averaged in training, the members' mean probability in
eval mode; piecewise-linear embeddings whose bins are fitted on the training
rows and come back from the checkpoint; a whole run (with pretraining) whose
RunModel equals its submission.csv and whose predictions can be explained."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import compose_train
from moa_lit import schema
from moa_lit.models.tabm import TabM
from moa_lit.training.module import MoAModule

N_FEATURES, N_TARGETS, K = 12, 3, 4
NET = {"_target_": "moa_lit.models.tabm.TabM", "k": K, "hidden_size": 8, "n_layers": 2, "dropout_hidden": 0.0}


def _rows(n: int = 64, seed: int = 0) -> torch.Tensor:
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, N_FEATURES)).astype(np.float32))
    x[:, 0] = (x[:, 0] > 0).float()  # a binary column, like the cp_time/cp_dose indicators
    return x


@pytest.mark.parametrize("embeddings", [None, "piecewise"])
def test_members_in_training_their_mean_probability_in_eval(embeddings):
    torch.manual_seed(0)
    net = TabM(N_FEATURES, N_TARGETS, k=K, hidden_size=8, num_embeddings=embeddings, n_bins=6, d_embedding=3)
    x = _rows()
    net.fit_inputs(x)
    assert net.train()(x).shape == (len(x), K, N_TARGETS)
    net.eval()
    members = net.head(net.body(x))  # each member's logits, without dropout
    mean = net(x)
    assert mean.shape == (len(x), N_TARGETS)
    np.testing.assert_allclose(torch.sigmoid(mean).detach().double(), torch.sigmoid(members).detach().double().mean(1),
                               rtol=1e-5, atol=1e-7)
    # k members, not k copies: every pair of members differs on these rows.
    spread = (members[:, :, None] - members[:, None]).abs().amax(dim=(0, 3))
    assert spread[~torch.eye(K, dtype=torch.bool)].min() > 1e-3


def test_training_loss_is_the_members_mean_loss_with_label_smoothing():
    torch.manual_seed(0)
    module = MoAModule(net=NET, optimizer={"_target_": "torch.optim.Adam"}, n_features=N_FEATURES,
                       n_targets=N_TARGETS, label_smoothing=0.1)
    x, y = _rows(), torch.from_numpy((np.random.default_rng(1).random((64, N_TARGETS)) < 0.2).astype(np.float32))
    loss = module.training_step((x, y), 0)
    smoothed = y * 0.9 + 0.05
    members = module.net.head(module.net.body(x))
    expected = torch.stack([F.binary_cross_entropy_with_logits(members[:, m], smoothed) for m in range(K)]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_piecewise_bins_are_the_training_rows_quantiles_and_a_checkpoint_restores_them():
    torch.manual_seed(0)
    net = TabM(N_FEATURES, N_TARGETS, k=K, hidden_size=8, num_embeddings="piecewise", n_bins=4, d_embedding=3)
    x = _rows(200) * 3 + 1  # not the placeholder's range
    net.fit_inputs(x)
    edges = net.body[0].edges
    np.testing.assert_allclose(edges[1:].numpy(), np.quantile(x[:, 1:].double().numpy(), np.linspace(0, 1, 5), axis=0).T,
                               rtol=1e-6)
    assert edges[0].isfinite().sum() < 5  # the binary column: its repeated quantiles once
    rebuilt = TabM(N_FEATURES, N_TARGETS, k=K, hidden_size=8, num_embeddings="piecewise", n_bins=4, d_embedding=3)
    rebuilt.load_state_dict(net.state_dict())
    unseen = _rows(30, seed=5) * 3 + 1
    assert torch.equal(rebuilt.eval()(unseen), net.eval()(unseen))


@pytest.fixture(scope="module")
def tabm_run(tmp_path_factory):
    """A tiny run: TabM with piecewise-linear embeddings, pretrained on the non-scored targets, label smoothing."""
    from moa_lit.train import train

    tmp = tmp_path_factory.mktemp("tabm")
    out = tmp / "run"
    train(compose_train([
        "debug=fast", "model=tabm", "data.n_samples=300", "data.n_scored=12", "data.n_nonscored=8", "data.n_genes=30",
        "data.n_cells=6", f"data.dir={tmp / 'data'}", "trainer.max_epochs=1", "model.net.k=4", "model.net.hidden_size=16",
        "model.net.num_embeddings=piecewise", "model.net.n_bins=4", "model.net.d_embedding=2", "model.label_smoothing=0.01",
        "pretrain.enabled=true", "pretrain.max_epochs=1", "loader.batch_size=32", "num_threads=1",
        "callbacks.progress_bar.refresh_rate=0", f"paths.output_dir={out}",
    ]))
    return out, next((tmp / "data").glob("synthetic-*"))


def test_a_tabm_run_writes_its_predictions_and_load_run_gives_its_submission(tabm_run):
    import moa_lit

    run, data = tabm_run
    assert (run / "oof.csv").is_file()
    fold = json.loads((run / "models" / "seed0" / "fold0" / "fold.json").read_text())
    assert fold["pretrained_targets"] > 0  # the body was pretrained, then took a new head
    probabilities = moa_lit.load_run(run).predict_proba(pd.read_csv(data / schema.TEST_FEATURES))
    submission = pd.read_csv(run / "submission.csv", dtype={schema.ID: str})
    np.testing.assert_allclose(probabilities.iloc[:, 1:].to_numpy(), submission.iloc[:, 1:].to_numpy(), rtol=0, atol=1e-7)


def test_a_tabm_run_is_explained(tabm_run, tmp_path):
    from moa_lit.predict import predict

    run, data = tabm_run
    predict(OmegaConf.create({"run_dir": str(run), "input": str(data / schema.TEST_FEATURES), "output": str(tmp_path / "p.csv"),
                              "explain": True, "k": 2, "top_k": 1, "ig_steps": 4, "num_threads": 1}))
    explanations = json.loads((tmp_path / "p_explained" / "explanations.json").read_text())
    calls = [call for compound in explanations["compounds"] for call in compound["calls"]]
    assert calls and all(call["top_features"] for call in calls)
    assert all(len(compound["nearest_compounds"]) == 2 for compound in explanations["compounds"])
