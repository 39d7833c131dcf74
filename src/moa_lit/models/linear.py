"""The linear reference model: batch norm, then one linear layer to the target
logits (a per-target logistic regression on normalised features). Reported
beside the MLP as a reference: a synthetic signal that is a sum of fixed
signatures plus noise is solved best by a linear model."""

from __future__ import annotations

from torch import nn

from moa_lit.settings import PROBABILITY
from moa_lit.models.heads import BodyHeadNet, Dropout


class LinearModel(BodyHeadNet):
    _parameter_constraints = {"dropout_input": PROBABILITY}

    def __init__(self, n_features: int, n_targets: int, dropout_input: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm1d(n_features), Dropout(dropout_input))
        self.body_size = n_features
        self.head = self.make_head(n_targets)

    def make_head(self, n_targets: int) -> nn.Module:
        return nn.Sequential(nn.Linear(self.body_size, n_targets))
