"""A 1D-CNN after the 2nd-place single model of the MoA competition: a dense layer maps the
tabular features to ``channels x length`` values, which are read as a 1-D
signal of ``channels`` channels. The dense layer thereby learns an ordering of
the features in which neighbouring positions are related, so convolutions
(which only see neighbours) become useful on tabular input."""

from __future__ import annotations

from torch import nn

from moa_lit.settings import at_least
from moa_lit.models.heads import NET, BodyHeadNet, Dropout, linear


class FeaturesToSignal(nn.Module):
    """(batch, features) -> (batch, channels, length) through one dense layer."""

    def __init__(self, n_features: int, channels: int, length: int, dropout: float, weight_norm: bool) -> None:
        super().__init__()
        self.channels, self.length = channels, length
        self.dense = nn.Sequential(
            nn.BatchNorm1d(n_features),
            Dropout(dropout),
            linear(n_features, channels * length, weight_norm),
            nn.CELU(),
        )

    def forward(self, x):
        return self.dense(x).reshape(len(x), self.channels, self.length)


class ConvBody(nn.Module):
    """Conv blocks of the 2nd-place net: a wide convolution, average pooling to
    half the length, two narrower convolutions whose output gates the pooled
    signal (element-wise product, the original's skip), then max pooling."""

    def __init__(self, channels: int, conv_channels: int, length: int, dropout: float) -> None:
        super().__init__()
        self.first = nn.Sequential(
            nn.BatchNorm1d(channels),
            Dropout(dropout / 2),
            nn.Conv1d(channels, conv_channels, kernel_size=5, padding=2, bias=False),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(max(length // 2, 1)),
        )
        self.second = nn.Sequential(
            nn.BatchNorm1d(conv_channels),
            Dropout(dropout / 2),
            nn.Conv1d(conv_channels, conv_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.BatchNorm1d(conv_channels),
            Dropout(dropout / 2),
            nn.Conv1d(conv_channels, conv_channels, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.Sequential(nn.MaxPool1d(kernel_size=4, stride=2, padding=1), nn.Flatten())

    def forward(self, x):
        x = self.first(x)
        return self.pool(self.second(x) * x)


class CNN1D(BodyHeadNet):
    _parameter_constraints = {
        **NET, "channels": at_least(1), "length": at_least(4), "conv_channels": at_least(1),
    }

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        channels: int = 256,
        length: int = 16,
        conv_channels: int = 512,
        dropout_input: float = 0.1,
        dropout_hidden: float = 0.2,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            FeaturesToSignal(n_features, channels, length, dropout_input, weight_norm),
            ConvBody(channels, conv_channels, length, dropout_hidden),
        )
        # Average-pooled to length // 2, then halved again by the max pool (length >= 4).
        self.body_size = conv_channels * (length // 4)
        self.dropout_hidden = dropout_hidden
        self.weight_norm = weight_norm
        self.head = self.make_head(n_targets)
