"""Nearest known compounds: each query compound against the labelled training
compounds, by cosine similarity of compound profiles (the mean of the
compound's row vectors) in each fold model's penultimate representation and,
as a baseline, in its rank-Gauss g-*/c-* inputs. The fold models' similarity
matrices are averaged: each model has its own representation space, so
vectors are never mixed across models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from moa_lit.explain.networks import COLUMN, FoldNetwork
from moa_lit.progress import QUIET, Progress
from moa_lit.runs import files

LEARNED, FEATURES = "learned", "features"


def compound_vectors(net: FoldNetwork, x: torch.Tensor, codes: np.ndarray, n_groups: int, space: str) -> torch.Tensor:
    """Unit-length compound profiles (group means) of one fold model from its network inputs x."""
    if space == LEARNED:
        v = net.embed(x.float())
    else:
        v = x[:, [i for i, inp in enumerate(net.inputs) if inp.kind == COLUMN]].float()
    sums = torch.zeros((n_groups, v.shape[1]), dtype=v.dtype, device=v.device)
    sums.index_add_(0, torch.from_numpy(codes).to(v.device), v)
    counts = torch.from_numpy(np.bincount(codes, minlength=n_groups)).to(v.device, v.dtype).clamp(min=1)
    return torch.nn.functional.normalize(sums / counts[:, None], dim=1).cpu()


@dataclass
class Reference:
    """Labelled training compounds as unit vectors of every fold model, per
    space: (compounds x sum of the models' widths), the models side by side,
    so one product gives the sum of the models' cosine similarities."""

    drugs: np.ndarray  # unique drug ids
    moas: list[list[str]]  # known MoAs per drug
    vectors: dict[str, torch.Tensor]  # {LEARNED|FEATURES: (n_drugs, total width)}
    n_models: int


def build_reference(networks: list[FoldNetwork], features: pd.DataFrame, drugs: np.ndarray, labels: np.ndarray,
                    names: list[str], progress: Progress = QUIET) -> Reference:
    """From training rows (those of drugs with at least one MoA are kept)."""
    keep = labels.sum(axis=1) > 0
    codes, uniques = pd.factorize(pd.Series(np.asarray(drugs)[keep]), sort=False)
    y = labels[keep]
    names = np.asarray(names)
    moas = [list(names[y[i] > 0.5]) for i in np.unique(codes, return_index=True)[1]]  # each drug's first row
    rows = features.loc[keep]
    vectors = {LEARNED: [], FEATURES: []}
    progress.phase(f"reference vectors of {len(uniques)} labelled training compounds ({len(rows)} rows), model",
                   total=len(networks))
    for net in networks:
        x = net.transform(rows)
        for space in vectors:
            vectors[space].append(compound_vectors(net, x, codes, len(uniques), space))
        progress.advance()
    return Reference(np.asarray(uniques), moas, {k: torch.cat(v, dim=1) for k, v in vectors.items()}, len(networks))


def similarities(networks: list[FoldNetwork], query_inputs: list[torch.Tensor], query_codes: np.ndarray,
                 n_queries: int, reference: Reference, space: str) -> np.ndarray:
    """(query compounds x reference compounds) cosine similarity, averaged over fold models."""
    q = torch.cat([compound_vectors(net, x, query_codes, n_queries, space) for net, x in zip(networks, query_inputs)], dim=1)
    return (q @ reference.vectors[space].T).double().numpy() / reference.n_models


def nearest(similarity: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and similarities of the k most similar references per query, best first."""
    k = min(k, similarity.shape[1])
    part = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(similarity, part, axis=1), axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(similarity, idx, axis=1)


# ---------------------------------------------------------------- cache
def save_reference(reference: Reference, path: Path) -> None:
    """The reference's vectors in one .npz (written atomically): building them
    means preprocessing and embedding every training row with every model, the
    slow part of finding neighbours."""
    files.write_npz(
        path,
        drugs=np.asarray(reference.drugs, dtype=str),
        moas=np.asarray(json.dumps(reference.moas)),
        n_models=np.asarray(reference.n_models),
        **{f"vectors_{space}": v.numpy() for space, v in reference.vectors.items()},
    )


def load_reference(path: Path) -> Reference | None:
    """A saved reference, or None when there is none or it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return Reference(
                saved["drugs"].astype(object),
                json.loads(str(saved["moas"])),
                {space: torch.from_numpy(saved[f"vectors_{space}"]) for space in (LEARNED, FEATURES)},
                int(saved["n_models"]),
            )
    except (OSError, KeyError, ValueError):
        return None
