"""Configs build only allowed objects: every shipped config passes, another
_target_ is one line naming the key."""

from __future__ import annotations

import pytest

from conftest import compose_train
from moa_lit.errors import MoAError
from moa_lit.targets import check_targets, is_allowed


@pytest.mark.parametrize(
    "overrides",
    [[], ["model=resnet"], ["model=cnn1d"], ["model=linear"], ["logger=tensorboard"], ["trainer=gpu"],
     ["experiment=best"], ["hparams_search=optuna"]],
)
def test_every_shipped_config_is_allowed(overrides):
    check_targets(compose_train(overrides))


def test_a_target_outside_the_allow_list_is_one_line_naming_the_key():
    cfg = compose_train(["logger._target_=subprocess.run"])
    with pytest.raises(MoAError) as info:
        check_targets(cfg)
    message = str(info.value)
    assert message.startswith("logger._target_=subprocess.run: this target is not allowed")
    assert "\n" not in message


def test_prefix_patterns_do_not_allow_look_alike_packages():
    assert is_allowed("torch.optim.SGD") and is_allowed("torch.optim.lr_scheduler.OneCycleLR")
    assert not is_allowed("torch.optimize_evil")
    assert not is_allowed("moa_lit_evil.run")
    assert not is_allowed("torch.load")
