"""Pretraining, transfer and stacked features inside one fold: the auxiliary
stages see the fold's training rows only."""

import lightning as L
import numpy as np
import pytest
import torch

from conftest import compose_train
from moa_lit import schema
from moa_lit.runs.run_dir import FoldDir
from moa_lit.train import fold_plan
from moa_lit.training import stages
from moa_lit.training.callbacks import FreezeBody
from moa_lit.errors import MoAError
from test_features import make_dm, make_frame

VAL_FOLD = 1


def compose_cfg(overrides):
    return compose_train(overrides)

def stage_cfg(*extra):
    return compose_cfg(
        [
            "model.net.hidden_size=16",
            "loader.batch_size=16",
            "pretrain.enabled=true",
            "pretrain.targets=scored+nonscored",
            "pretrain.max_epochs=1",
            "stack.inner_folds=2",
            "stack.max_epochs=1",
            "stack.targets=scored+nonscored",
            *extra,
        ]
    )


def plain_trainer(callbacks):
    """Stage 2 without checkpointing or validation: these tests look at stage 1."""
    trainer = L.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=callbacks,
    )
    return trainer, None


def data(n=120):
    frame, scored, layout = make_frame(n=n)
    rng = np.random.default_rng(1)
    nonscored = (rng.random((n, 5)) < 0.2).astype(np.float32)
    nonscored[frame[schema.CP_TYPE].to_numpy() == schema.CONTROL] = 0
    folds = np.arange(n) % 3
    return frame, scored, nonscored, layout, folds


def fit(cfg, frame, scored, nonscored, layout, folds, tmp_path, monkeypatch):
    """fit_fold on fold VAL_FOLD; returns what each auxiliary model was trained on and the models."""
    calls = []
    original = stages.train_without_validation

    def spy(plan, node, dm, x, y, label, root, stage):
        module = original(plan, node, dm, x, y, label, root, stage)
        calls.append({"x": x.clone(), "y": np.array(y), "label": label, "module": module})
        return module

    original_stack = stages.fit_stacked_features

    def spy_stack(*args, **kwargs):
        stack, x_aug = original_stack(*args, **kwargs)
        calls.append({"label": "stacked training matrix", "x_aug": x_aug})
        return stack, x_aug

    monkeypatch.setattr(stages, "train_without_validation", spy)
    monkeypatch.setattr(stages, "fit_stacked_features", spy_stack)
    dm = make_dm(frame, scored, layout, folds, rank_gauss=True, n_quantiles=20).set_fold(VAL_FOLD)
    fold_dir = FoldDir(tmp_path / f"run{len(list(tmp_path.iterdir()))}", seed=0, fold=VAL_FOLD)  # a fresh fold folder per fit
    fold_dir.path.mkdir(parents=True)
    fitted = stages.fit_fold(fold_plan(cfg), dm, VAL_FOLD, 0, fold_dir, make_trainer=plain_trainer, nonscored=nonscored)
    return dm, fitted, calls


def poison_unseen(frame, scored, nonscored, layout, folds):
    """Scramble the features and every label of the validation and control rows."""
    unseen = (folds == VAL_FOLD) | (frame[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    frame, scored, nonscored = frame.copy(), scored.copy(), nonscored.copy()
    frame.loc[unseen, layout.numeric] = frame.loc[unseen, layout.numeric] * 50 - 3
    scored[unseen] = 1 - scored[unseen]
    nonscored[unseen] = 1 - nonscored[unseen]
    return frame, scored, nonscored


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_pretraining_never_sees_validation_rows(tmp_path, monkeypatch):
    frame, scored, nonscored, layout, folds = data()
    cfg = stage_cfg()
    dm, fitted, calls = fit(cfg, frame, scored, nonscored, layout, folds, tmp_path, monkeypatch)
    (pre,) = [c for c in calls if "pretraining" in c["label"]]
    # trained on exactly the fold's treated training rows, scored + non-scored columns with a positive
    assert len(pre["x"]) == len(dm.train_rows(VAL_FOLD))
    train = dm.train_rows(VAL_FOLD)
    expected = np.hstack([scored, nonscored])[train]
    np.testing.assert_array_equal(pre["y"], expected[:, expected.sum(axis=0) > 0])
    # the scored model kept the pretrained body under a new head of the scored targets
    assert fitted.module.net.head[-1].weight.shape[0] == scored.shape[1]
    assert pre["module"].net.head[-1].weight.shape[0] == pre["y"].shape[1]

    p_frame, p_scored, p_nonscored = poison_unseen(frame, scored, nonscored, layout, folds)
    _, _, calls2 = fit(cfg, p_frame, p_scored, p_nonscored, layout, folds, tmp_path, monkeypatch)
    assert_same_state(state(pre["module"]), state(calls2[0]["module"]))

    # ...while changing training rows' labels does change stage 1 (the check can fail)
    changed = nonscored.copy()
    changed[train[:20]] = 1 - changed[train[:20]]
    _, _, calls3 = fit(cfg, frame, scored, changed, layout, folds, tmp_path, monkeypatch)
    with pytest.raises(AssertionError):
        assert_same_state(state(pre["module"]), state(calls3[0]["module"]))


def test_stacked_features_are_out_of_fold_inside_the_training_rows(tmp_path, monkeypatch):
    frame, scored, nonscored, layout, folds = data()
    cfg = stage_cfg("pretrain.enabled=false", "stack.enabled=true")
    dm, fitted, calls = fit(cfg, frame, scored, nonscored, layout, folds, tmp_path, monkeypatch)
    inner = [c for c in calls if "stacked inner fold" in c["label"]]
    (x_aug,) = [c["x_aug"] for c in calls if "x_aug" in c]
    assert len(inner) == 2 and fitted.stack is not None
    x_train = dm.tensors.x_train
    n_train, n_base = x_train.shape
    assert sum(len(c["x"]) for c in inner) == n_train  # 2 inner folds: each row fitted once

    # Rebuild the stacked training columns: each row's value must come from the
    # inner model that did not train on that row.
    train_keys = {tuple(r) for r in x_train.numpy().round(5)}
    for c in inner:
        fitted_keys = {tuple(r) for r in c["x"].numpy().round(5)}
        assert fitted_keys <= train_keys
        held_out = np.array([tuple(r) not in fitted_keys for r in x_train.numpy().round(5)])
        assert held_out.any()
        expected = c["module"].probabilities(x_train[held_out])
        got = x_aug[held_out, n_base:]
        torch.testing.assert_close(got, expected)

    # The scored model's inputs are the base features plus the stacked columns,
    # and validation rows get the average of the inner models.
    assert fitted.module.hparams.n_features == n_base + inner[0]["y"].shape[1]
    x_val = dm.tensors.x_val
    avg = torch.stack([c["module"].probabilities(x_val).double() for c in inner]).mean(0).float()
    torch.testing.assert_close(fitted.stack.augment(x_val)[:, n_base:], avg)
    assert fitted.predict_features(x_val).shape == (len(x_val), scored.shape[1])

    # inner models never see validation rows either
    p_frame, p_scored, p_nonscored = poison_unseen(frame, scored, nonscored, layout, folds)
    _, _, calls2 = fit(cfg, p_frame, p_scored, p_nonscored, layout, folds, tmp_path, monkeypatch)
    inner2 = [c for c in calls2 if "stacked inner fold" in c["label"]]
    for a, b in zip(inner, inner2, strict=True):
        assert_same_state(state(a["module"]), state(b["module"]))


def test_freeze_body_keeps_the_body_for_the_first_epochs():
    torch.manual_seed(0)
    cfg = stage_cfg()
    from hydra.utils import instantiate

    module = instantiate(cfg.model, n_features=8, n_targets=3, _recursive_=False)
    x = torch.randn(64, 8)
    y = (torch.rand(64, 3) < 0.3).float()
    body_before, head_before = state(module.net.body), state(module.net.head)
    from moa_lit.training.datamodule import TensorBatches

    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[FreezeBody(1)],
    )
    trainer.fit(module, train_dataloaders=TensorBatches(x, y, 16, shuffle=True))
    assert_same_state(body_before, state(module.net.body))  # weights and batch-norm statistics
    with pytest.raises(AssertionError):
        assert_same_state(head_before, state(module.net.head))
    assert all(p.requires_grad for p in module.net.body.parameters())  # unfrozen afterwards


def test_body_learning_rate_scale_makes_two_parameter_groups():
    cfg = stage_cfg()
    from hydra.utils import instantiate

    module = instantiate(cfg.model, n_features=8, n_targets=3, _recursive_=False, body_lr_scale=0.1)
    body, rest = module._param_groups()
    assert body["lr"] == pytest.approx(0.1 * rest["lr"])
    assert len(body["params"]) == len(list(module.net.body.parameters()))
    assert len(body["params"]) + len(rest["params"]) == len(list(module.parameters()))


def test_stage_settings_errors():
    with pytest.raises(MoAError, match="pretrain.enabled=true needs non-scored targets"):
        fold_plan(stage_cfg()).check(None)
    from moa_lit.settings import TrainConfig, check_config  # the settings are checked when a command starts

    with pytest.raises(MoAError, match="stack.inner_folds=1"):
        check_config(stage_cfg("stack.enabled=true", "stack.inner_folds=1"), TrainConfig)
    with pytest.raises(MoAError, match="pretrain.targets='all'"):
        check_config(stage_cfg("pretrain.targets=all"), TrainConfig)
    empty = np.zeros((10, 4))
    with pytest.raises(MoAError, match="no target has a positive among fold 2's"):
        stages.auxiliary_targets("pretrain", "nonscored", empty, empty, np.arange(5), 2)
