"""The dropout/batch-norm MLP of the original MoA notebook: every block is
batch norm -> dropout -> (weight-normed) linear -> activation, and the head is
batch norm -> dropout -> linear to the target logits."""

from __future__ import annotations

from torch import nn

from moa_lit.settings import at_least
from moa_lit.models.heads import ACTIVATIONS, NET, BodyHeadNet, Dropout, linear


class MLP(BodyHeadNet):
    _parameter_constraints = {**NET, "hidden_size": at_least(1), "n_layers": at_least(1)}

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        hidden_size: int = 1024,
        n_layers: int = 2,
        dropout_input: float = 0.2,
        dropout_hidden: float = 0.5,
        weight_norm: bool = True,
        activation_name: str = "relu",
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        n_in = n_features
        for i in range(n_layers):
            blocks += [
                nn.BatchNorm1d(n_in),
                Dropout(dropout_input if i == 0 else dropout_hidden),
                linear(n_in, hidden_size, weight_norm),
                ACTIVATIONS[activation_name](),
            ]
            n_in = hidden_size
        self.body = nn.Sequential(*blocks)
        self.body_size = hidden_size
        self.dropout_hidden = dropout_hidden
        self.weight_norm = weight_norm
        self.head = self.make_head(n_targets)
