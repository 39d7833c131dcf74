"""A residual MLP for tabular rows: an input projection, then blocks whose
output is added back to their input, so deeper stacks train as easily as a
shallow MLP (not the winners' two-input "2-heads ResNet"; docs/modelling.md)."""

from __future__ import annotations

from torch import nn

from moa_lit.settings import at_least
from moa_lit.models.heads import ACTIVATIONS, NET, BodyHeadNet, Dropout, linear


class ResidualBlock(nn.Module):
    """x + f(x), with f = (batch norm -> dropout -> linear -> activation) x 2."""

    def __init__(self, size: int, dropout: float, weight_norm: bool, activation_name: str) -> None:
        super().__init__()
        self.f = nn.Sequential(
            nn.BatchNorm1d(size),
            Dropout(dropout),
            linear(size, size, weight_norm),
            ACTIVATIONS[activation_name](),
            nn.BatchNorm1d(size),
            Dropout(dropout),
            linear(size, size, weight_norm),
            ACTIVATIONS[activation_name](),
        )

    def forward(self, x):
        return x + self.f(x)


class ResNet(BodyHeadNet):
    _parameter_constraints = {**NET, "hidden_size": at_least(1), "n_blocks": at_least(1)}

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        hidden_size: int = 512,
        n_blocks: int = 2,
        dropout_input: float = 0.2,
        dropout_hidden: float = 0.3,
        weight_norm: bool = True,
        activation_name: str = "relu",
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(n_features),
            Dropout(dropout_input),
            linear(n_features, hidden_size, weight_norm),
            ACTIVATIONS[activation_name](),
            *[ResidualBlock(hidden_size, dropout_hidden, weight_norm, activation_name) for _ in range(n_blocks)],
        )
        self.body_size = hidden_size
        self.dropout_hidden = dropout_hidden
        self.weight_norm = weight_norm
        self.head = self.make_head(n_targets)
