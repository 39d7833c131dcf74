"""Configs build only allowed objects: every shipped config passes, another
_target_ is one line naming the key."""

from __future__ import annotations

import pytest

from conftest import compose_train
from moa_lit.errors import MoAError
from moa_lit.targets import check_targets, is_allowed


@pytest.mark.parametrize(
    "overrides",
    [[], ["model=resnet"], ["model=cnn1d"], ["model=linear"], ["model=tabm"], ["logger=tensorboard"], ["trainer=gpu"],
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


def test_the_list_names_exact_classes_and_an_attribute_path_is_refused():
    from moa_lit.targets import ALLOWED_TARGETS

    assert not any("*" in t for t in ALLOWED_TARGETS)
    assert not is_allowed("moa_lit.cli.os.system") and not is_allowed("moa_lit.runs.files.write_text")
    assert not is_allowed("moa_lit") and not is_allowed(None)


def test_every_listed_target_exists():
    from hydra.utils import get_object

    from moa_lit.targets import ALLOWED_TARGETS

    for target in ALLOWED_TARGETS:
        assert callable(get_object(target)), target


def test_hydra_section_and_ensemble_members_are_checked_too():
    from omegaconf import OmegaConf

    hydra = OmegaConf.create({"hydra": {"callbacks": {"x": {"_target_": "moa_lit.runs.files.write_text", "path": "/tmp/x"}}}})
    with pytest.raises(MoAError, match=r"^hydra.callbacks.x._target_=moa_lit.runs.files.write_text: this target is not allowed"):
        check_targets(hydra)
    member = compose_train(["experiment=ensemble", "ensemble.models.linear.optimizer._target_=moa_lit.cli.os.system"])
    with pytest.raises(MoAError, match=r"^ensemble.models.linear.optimizer._target_=moa_lit.cli.os.system: "):
        check_targets(member)
