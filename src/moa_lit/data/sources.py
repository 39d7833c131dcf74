"""Where a run's data comes from: the built-in synthetic generator or a folder
in the Kaggle layout. Each is a Hydra ``_target_`` of ``conf/data/``."""

from __future__ import annotations

import logging
from pathlib import Path

from moa_lit import schema
from moa_lit.data.reader import MoAData, read_dataset
from moa_lit.data.synthetic import DEFAULT_VARIANT, VARIANTS, SyntheticConfig, ensure_synthetic
from moa_lit.errors import MoAError
from moa_lit.settings import BOOLEAN, Options, at_least
from moa_lit.settings import Path as PathSetting

log = logging.getLogger(__name__)


def load_kaggle(
    dir: str | None,
    n_genes: int = schema.N_GENES,
    n_cells: int = schema.N_CELLS,
    use_cache: bool = True,
) -> MoAData:
    if not dir:
        raise MoAError(
            "data=kaggle needs data.dir=/path/to/lish-moa, the folder holding "
            f"{schema.TRAIN_FEATURES} and {schema.TRAIN_TARGETS_SCORED}"
        )
    return read_dataset(
        Path(str(dir)).expanduser(),  # a folder named 2024 comes as a number
        n_genes=n_genes,
        n_cells=n_cells,
        use_cache=use_cache,
    )


def load_synthetic(
    dir: str,
    n_samples: int = 23814,
    seed: int = 0,
    n_genes: int = schema.N_GENES,
    n_cells: int = schema.N_CELLS,
    n_scored: int = schema.N_SCORED,
    n_nonscored: int = schema.N_NONSCORED,
    use_cache: bool = True,
    variant: str = DEFAULT_VARIANT,
) -> MoAData:
    cfg = SyntheticConfig(
        n_samples=n_samples,
        seed=seed,
        n_genes=n_genes,
        n_cells=n_cells,
        n_scored=n_scored,
        n_nonscored=n_nonscored,
        variant=variant,
    )
    return load_kaggle(ensure_synthetic(cfg, Path(str(dir)).expanduser()), n_genes, n_cells, use_cache)


# Checked once when a command starts (settings.check_config), as ``data.*``.
load_kaggle._parameter_constraints = {
    "dir": PathSetting(nullable=True), "n_genes": at_least(0), "n_cells": at_least(0), "use_cache": BOOLEAN,
}
load_synthetic._parameter_constraints = {
    "dir": PathSetting(), "n_samples": at_least(50), "seed": at_least(0), "n_genes": at_least(0), "n_cells": at_least(0),
    "n_scored": at_least(1), "n_nonscored": at_least(0), "use_cache": BOOLEAN, "variant": Options(values=VARIANTS),
}
