"""What moa-lit's sweeper takes from hydra-optuna-sweeper: its public config
schema, and one private function (the search-space parser). These tests fail
when an upstream release changes either, before a search misbehaves."""

from __future__ import annotations

import inspect

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from moa_lit.config import CONFIG_DIR
from hydra_plugins.moa_lit_sweeper.optuna_sweeper import FailureTolerantOptunaSweeper
from moa_lit.search import FAILURE_TOLERANT_SWEEPER
from moa_lit.sweeper import parse_search_space


def search_config():
    """The search config with its hydra section, as the sweeper sees it."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR):
            return compose(config_name="train", overrides=["hparams_search=optuna"], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def test_our_sweeper_takes_exactly_the_plugins_config_keys():
    import hydra_plugins.hydra_optuna_sweeper.config  # noqa: F401  (registers hydra/sweeper/optuna)

    node = ConfigStore.instance().load("hydra/sweeper/optuna.yaml").node
    schema_keys = {k for k in node.keys() if k not in ("_target_", "defaults")}
    ours = set(inspect.signature(FailureTolerantOptunaSweeper.__init__).parameters) - {"self"}
    assert ours == schema_keys


def test_the_search_config_selects_our_sweeper():
    cfg = search_config()
    assert cfg.hydra.sweeper._target_ == FAILURE_TOLERANT_SWEEPER


def test_private_parser_returns_distributions_fixed_values_and_deletions():
    # PRIVATE upstream: hydra_plugins.hydra_optuna_sweeper._impl.create_params_from_overrides
    space, fixed, deletions = parse_search_space([
        "a=choice(1,2,3)",
        "b=interval(0.1,0.5)",
        "c=tag(log,interval(1e-4,1e-1))",
        "d=int(interval(1,8))",
        "e=7",
        "~f",
    ])
    assert space["a"] == CategoricalDistribution([1, 2, 3])
    assert space["b"] == FloatDistribution(0.1, 0.5)
    assert space["c"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["d"] == IntDistribution(1, 8)
    assert fixed == {"e": "7"}
    assert deletions == ["~f"]


@pytest.mark.parametrize(
    "override, expected",
    [
        # Hydra 1.4: range()'s stop is exclusive, like Python's range.
        ("n=range(1,4)", IntDistribution(1, 3)),
        ("n=range(2,10,4)", IntDistribution(2, 6, step=4)),
        ("x=range(0.5,2.0,0.5)", FloatDistribution(0.5, 1.5, step=0.5)),
    ],
)
def test_range_stop_is_exclusive(override, expected):
    space, _, _ = parse_search_space([override])
    assert next(iter(space.values())) == expected


def test_the_shipped_search_space_parses_to_the_intended_distributions():
    cfg = search_config()
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    space, fixed, _ = parse_search_space([f"{k}={v}" for k, v in params.items()])
    assert not fixed
    assert space["model.scheduler.max_lr"] == FloatDistribution(1e-3, 3e-2, log=True)
    assert space["model.net.n_layers"] == CategoricalDistribution([1, 2, 3])
    assert space["loader.batch_size"] == CategoricalDistribution([64, 128, 256])
    # The shipped space uses no range(): its meaning changed in Hydra 1.4.
    assert not any("range(" in str(v) for v in params.values())
