"""What every network shares for transfer: a ``body`` (input -> representation
of ``body_size``) and a replaceable ``head`` (representation -> logits) whose
output bias can start at the training prior."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from moa_lit.settings import BOOLEAN, PROBABILITY, Options

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "silu": nn.SiLU, "gelu": nn.GELU}

# The constraints the networks share (each class declares its own
# ``_parameter_constraints``; settings.check_config checks them once).
NET = {
    "dropout_input": PROBABILITY,
    "dropout_hidden": PROBABILITY,
    "weight_norm": BOOLEAN,
    "activation_name": Options(values=tuple(sorted(ACTIVATIONS))),
}


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask is drawn 16 bits per value from 32-bit
    random integers: torch's CPU dropout draws a float per value, which was a
    third of an MLP training step on 2 cores (issue 22; the rate is kept to
    1/65,536). On a GPU (counter-based random numbers, fast), nn.Dropout's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.device.type != "cpu" or not 0 < self.p < 1:
            return super().forward(x)
        n = x.numel()
        bits = torch.empty((n + 1) // 2, dtype=torch.int32, device=x.device).random_(-(2**31), 2**31)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= round(self.p * 65536) - 32768
        return torch.where(keep, x * (1 / (1 - self.p)), 0.0)


def linear(n_in: int, n_out: int, weight_norm: bool) -> nn.Module:
    layer = nn.Linear(n_in, n_out)
    return _weight_norm(layer) if weight_norm else layer


class BodyHeadNet(nn.Module):
    """Base of the model families; subclasses build ``self.body``, set
    ``self.body_size`` (and ``dropout_hidden``, ``weight_norm`` for the default
    head) and call ``self.head = self.make_head(n_targets)``."""

    body: nn.Module
    head: nn.Module
    body_size: int
    dropout_hidden: float = 0.0
    weight_norm: bool = False

    def make_head(self, n_targets: int) -> nn.Module:
        """The notebook MLP's head: batch norm, dropout, linear to the logits."""
        return nn.Sequential(
            nn.BatchNorm1d(self.body_size),
            Dropout(self.dropout_hidden),
            linear(self.body_size, n_targets, self.weight_norm),
        )

    def fit_inputs(self, x) -> None:
        """State the net fits on the training rows' features before training
        (kept as buffers, so checkpoints restore it); none by default."""

    def set_output_bias(self, bias) -> None:
        """The bias of the head's last layer (a Linear, possibly weight-normed)."""
        out = self.head[-1]
        out.bias.data.copy_(torch.as_tensor(bias, dtype=out.bias.dtype))

    def forward(self, x):
        return self.head(self.body(x))
