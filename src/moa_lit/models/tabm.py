"""TabM (Gorishniy et al., ICLR 2025; the ``tabm`` package): an ensemble of
``k`` MLPs that share their weights except for per-member scalings
(BatchEnsemble layers), all trained on the same batches. In training mode the
net returns every member's logits, (batch, k, targets), and MoAModule averages
the members' losses; in eval mode it returns the logit of the members' mean
probability, (batch, targets), so validation, predict and explain see one model.

``num_embeddings=piecewise`` adds TabM's piecewise-linear embeddings of the
inputs (``rtdl_num_embeddings``, version B), whose bin edges are quantiles of
the training rows: ``fit_inputs`` computes them before training, and they are a
buffer of the net, so a checkpoint rebuilds the same embeddings."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import rtdl_num_embeddings
import tabm
import torch
import torch.nn.functional as F
from torch import nn

from moa_lit.settings import PROBABILITY, Options, at_least
from moa_lit.models.heads import ACTIVATIONS, NET, BodyHeadNet


class PiecewiseLinear(nn.Module):
    """``rtdl_num_embeddings.PiecewiseLinearEmbeddings`` of each input column,
    flattened, rebuilt from the buffer ``edges`` (features x n_bins + 1; +inf
    past a column's last edge) whenever ``fit`` or a loaded state dict changes it.
    Until fitted, every column has n_bins equal bins on [-3, 3]."""

    def __init__(self, n_features: int, n_bins: int, d_embedding: int) -> None:
        super().__init__()
        self.d_embedding = d_embedding
        self.register_buffer("edges", torch.linspace(-3.0, 3.0, n_bins + 1).repeat(n_features, 1))
        self._build()

    def _build(self) -> None:
        bins = [row[row.isfinite()] for row in self.edges]
        with warnings.catch_warnings():
            # A binary column (cp_time, cp_dose indicators) has one bin: min-max scaling, as the warning says.
            warnings.filterwarnings("ignore", message=".*just two bin edges.*")
            self.embeddings = rtdl_num_embeddings.PiecewiseLinearEmbeddings(
                bins, self.d_embedding, activation=False, version="B"
            ).to(self.edges.device)

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Edges at the training rows' quantiles (a column's repeated quantiles
        once; a constant column gets one bin of width 1)."""
        n_edges = self.edges.shape[1]
        quantiles = np.quantile(x.double().cpu().numpy(), np.linspace(0.0, 1.0, n_edges), axis=0).T
        edges = np.full((len(quantiles), n_edges), np.inf, dtype=np.float32)
        for i, column in enumerate(quantiles):
            unique = np.unique(column.astype(np.float32))
            edges[i, : max(len(unique), 2)] = unique if len(unique) > 1 else [unique[0], unique[0] + 1]
        self.edges = torch.from_numpy(edges).to(self.edges.device)
        self._build()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        saved = state_dict.get(prefix + "edges")
        if saved is not None and saved.shape == self.edges.shape and not torch.equal(saved.to(self.edges), self.edges):
            self.edges = saved.to(self.edges)
            self._build()  # the embeddings' shapes follow the edges; their weights load next
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embeddings(x).flatten(1)


class TabM(BodyHeadNet):
    _parameter_constraints = {
        "k": at_least(1),
        "hidden_size": at_least(1),
        "n_layers": at_least(1),
        "dropout_hidden": PROBABILITY,
        "activation_name": NET["activation_name"],
        "num_embeddings": dataclasses.replace(Options(values=("piecewise",)), nullable=True),
        "n_bins": at_least(2),
        "d_embedding": at_least(1),
    }

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        k: int = 16,
        hidden_size: int = 256,
        n_layers: int = 2,
        dropout_hidden: float = 0.1,
        activation_name: str = "relu",
        num_embeddings: str | None = None,
        n_bins: int = 48,
        d_embedding: int = 16,
    ) -> None:
        super().__init__()
        embed = [PiecewiseLinear(n_features, n_bins, d_embedding)] if num_embeddings == "piecewise" else []
        d_features = [d_embedding if embed else 1] * n_features  # each column's width after the embeddings
        backbone = tabm.make_tabm_backbone(
            d_in=sum(d_features),
            n_blocks=n_layers,
            d_block=hidden_size,
            dropout=dropout_hidden,
            activation=ACTIVATIONS[activation_name].__name__,
            k=k,
            arch_type="tabm",
            # TabM.make's choices: the first scaling random per member, one value per input column.
            start_scaling_init="normal" if embed else "random-signs",
            start_scaling_init_chunks=d_features,
        )
        # The body ends flat, (batch, k * hidden_size): one representation per row for explain's neighbours.
        self.body = nn.Sequential(*embed, tabm.EnsembleView(k=k), backbone, nn.Flatten(1))
        self.k, self.hidden_size = k, hidden_size
        self.body_size = k * hidden_size
        self.head = self.make_head(n_targets)

    def make_head(self, n_targets: int) -> nn.Module:
        """Each member's own linear layer to the logits (set_output_bias sets every member's bias)."""
        return nn.Sequential(nn.Unflatten(1, (self.k, self.hidden_size)), tabm.LinearEnsemble(self.hidden_size, n_targets, k=self.k))

    def fit_inputs(self, x: torch.Tensor) -> None:
        if isinstance(self.body[0], PiecewiseLinear):
            self.body[0].fit(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.body(x))  # (batch, k, targets)
        if self.training:
            return logits
        # logit(mean_k sigmoid(z)) = log(mean_k p) - log(mean_k (1 - p)), in log space.
        return torch.logsumexp(F.logsigmoid(logits), dim=1) - torch.logsumexp(F.logsigmoid(-logits), dim=1)
