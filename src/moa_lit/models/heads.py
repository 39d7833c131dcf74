"""What every network shares for transfer: a ``body`` (input -> representation
of ``body_size``) and a replaceable ``head`` (representation -> logits) whose
output bias can start at the training prior."""

from __future__ import annotations

import torch
from torch import nn


class BodyHeadNet(nn.Module):
    """Base of the model families; subclasses build ``self.body``, set
    ``self.body_size`` and call ``self.head = self.make_head(n_targets)``."""

    body: nn.Module
    head: nn.Module
    body_size: int

    def make_head(self, n_targets: int) -> nn.Module:
        raise NotImplementedError

    def output_layer(self) -> nn.Module:
        """The last layer of the head (a Linear, possibly weight-normed)."""
        return self.head[-1] if isinstance(self.head, nn.Sequential) else self.head

    def set_output_bias(self, bias) -> None:
        """Start from the training prior: the head's bias set to the prevalence logits."""
        out = self.output_layer()
        out.bias.data.copy_(torch.as_tensor(bias, dtype=out.bias.dtype))

    def forward(self, x):
        return self.head(self.body(x))
