"""The interface the explanations need from a trained run: per seed x fold
model, ``transform`` (feature rows -> the network's input tensor, with stacked
predictions appended where the run has them), the network (inputs -> target
logits) and its body (inputs -> penultimate representation), and a description
of each network input (``inputs.describe_inputs``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from moa_lit.explain.inputs import NetworkInput, describe_inputs
from moa_lit.training.fold_predictor import FoldPredictor


@dataclass
class FoldNetwork:
    label: str  # "seed 0 fold 1": names this model's derived inputs
    transform: Callable[[pd.DataFrame], torch.Tensor]
    network: nn.Module  # inputs -> logits, in eval mode
    body: nn.Module  # inputs -> penultimate representation
    inputs: list[NetworkInput]  # one per network input column
    fold: int | None = None
    seed: int | None = None

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        return torch.cat([self.body(x[i : i + batch_size]) for i in range(0, max(len(x), 1), batch_size)])[: len(x)]


def from_fold_predictors(predictors: Sequence[FoldPredictor], genes: Sequence[str], cells: Sequence[str]) -> list[FoldNetwork]:
    """Adapter from the :class:`FoldPredictor` s (preprocessor, optional stack,
    network) of the run's final model, as ``predict`` loads them: the
    explanations see the same networks, inputs and device as the predictions."""
    networks = []
    for p in predictors:
        net = p.module.net.eval()

        def transform(features: pd.DataFrame, p=p) -> torch.Tensor:
            return p.network_input(p.transform(features))

        n_stacked = p.module.hparams.n_features - _n_preprocessed(p.preprocessor, genes, cells)
        label = f"seed {p.seed} " + ("refit" if p.fold is None else f"fold {p.fold}")
        networks.append(
            FoldNetwork(
                label=label,
                transform=transform,
                network=net,
                body=net.body,
                inputs=describe_inputs(p.preprocessor, genes, cells, n_stacked=n_stacked, label=label),
                fold=p.fold,
                seed=p.seed,
            )
        )
    return networks


def _n_preprocessed(preprocessor, genes, cells) -> int:
    return len(describe_inputs(preprocessor, genes, cells, n_stacked=0, label=""))
