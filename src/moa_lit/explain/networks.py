"""The interface the explanations need from a trained run, per seed x fold
model (``FoldNetwork``), and what each network input is, read from the fold's
fitted preprocessing (``features.build_feature_pipeline``): a g-*/c-* column
(a per-column monotone transform of it, so its attribution is that column's),
a PCA or factor-analysis component (with its loadings, to name its top-loading
columns), a row statistic, a cp_time/cp_dose indicator, or a stacked prediction
appended after the preprocessor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.pipeline import Pipeline
from torch import nn

from moa_lit.errors import MoAError
from moa_lit.training.fold_predictor import FoldPredictor

COLUMN, COMPONENT, ROW_STATISTIC, META, STACKED = "column", "component", "row statistic", "meta", "stacked prediction"
ROW_STATISTICS = ("mean", "std", "skew", "kurtosis")  # features.row_statistics' order
_BLOCK_NAMES = {"genes": "genes", "cells": "cells", "gene_stats": "genes", "cell_stats": "cells"}
_METHODS = {"pca": "PCA", "fa": "factor analysis"}


@dataclass
class NetworkInput:
    name: str  # "g-12", "genes PCA 3 (seed 0 fold 1)", "cells row mean", "cp_dose=D2", "stacked prediction 5"
    kind: str
    # For components: (column, loading) pairs, largest |loading| first.
    loadings: list[tuple[str, float]] = field(default_factory=list)


def _top_loadings(columns: Sequence[str], weights: np.ndarray, n: int = 8) -> list[tuple[str, float]]:
    order = np.argsort(-np.abs(weights), kind="stable")[:n]
    return [(str(columns[i]), round(float(weights[i]), 4)) for i in order]


def _block_inputs(block: Pipeline, block_name: str, columns: Sequence[str], label: str) -> list[NetworkInput]:
    what = _BLOCK_NAMES[block_name]
    out: list[NetworkInput] = []
    for step, part in block.named_steps["expand"].transformer_list:
        if step == "values":
            out += [NetworkInput(str(c), COLUMN) for c in columns]
            continue
        components = np.asarray(part.components_)
        for i, weights in enumerate(components):
            name = f"{what} {_METHODS[step]} {i + 1}" + (f" ({label})" if label else "")
            out.append(NetworkInput(name, COMPONENT, _top_loadings(columns, weights)))
    if "variance" in block.named_steps:
        keep = block.named_steps["variance"].get_support()
        out = [inp for inp, k in zip(out, keep) if k]
    return out


def describe_inputs(preprocessor: Pipeline, n_inputs: int | None = None, label: str = "") -> list[NetworkInput]:
    """One NetworkInput per network input column, in the network's order; the
    network's inputs past the preprocessor's (up to ``n_inputs``) are stacked predictions."""
    try:
        transformers = preprocessor.named_steps["columns"].transformers_
    except (AttributeError, KeyError):
        raise MoAError("the run's preprocessor is not a fitted moa-lit feature pipeline; expected one saved by train") from None
    out: list[NetworkInput] = []
    for name, part, columns in transformers:
        if isinstance(part, str) or len(columns) == 0:  # "drop" / "passthrough" remainder
            continue
        if name in ("genes", "cells"):
            out += _block_inputs(part, name, columns, label)
        elif name in ("gene_stats", "cell_stats"):
            out += [NetworkInput(f"{_BLOCK_NAMES[name]} row {s}", ROW_STATISTIC) for s in ROW_STATISTICS]
        elif name == "meta":
            for column, categories in zip(columns, part.categories_):
                out += [NetworkInput(f"{column}={c}", META) for c in categories]
        else:
            raise MoAError(f"the run's preprocessor has an unknown block {name!r}; expected one saved by this moa-lit")
    return out + [NetworkInput(f"stacked prediction {i + 1}", STACKED) for i in range((n_inputs or len(out)) - len(out))]


@dataclass
class FoldNetwork:
    label: str  # "seed 0 fold 1": names this model's derived inputs
    transform: Callable[[pd.DataFrame], torch.Tensor]  # feature rows -> the network's input
    network: nn.Module  # inputs -> logits, in eval mode
    body: nn.Module  # inputs -> penultimate representation
    inputs: list[NetworkInput]  # one per network input column
    fold: int | None = None
    seed: int | None = None

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        return torch.cat([self.body(x[i : i + batch_size]) for i in range(0, max(len(x), 1), batch_size)])[: len(x)]


def from_fold_predictors(predictors: Sequence[FoldPredictor]) -> list[FoldNetwork]:
    """The networks of the run's final model as ``predict`` loaded them: the
    explanations see the same networks, inputs and device as the predictions."""
    networks = []
    for p in predictors:
        net = p.module.net.eval()
        label = f"seed {p.seed} " + ("refit" if p.fold is None else f"fold {p.fold}")
        inputs = describe_inputs(p.preprocessor, p.module.hparams.n_features, label)
        networks.append(FoldNetwork(label, lambda f, p=p: p.network_input(p.transform(f)), net, net.body, inputs,
                                    p.fold, p.seed))
    return networks
