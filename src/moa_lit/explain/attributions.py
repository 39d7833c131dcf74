"""Integrated Gradients (captum) of each row's MoA logits with respect to the
network inputs, averaged over the run's seed x fold models.

Baseline: the same row with every g-*/c-* value at 0, i.e. a profile with no
response (the assay values are centred), passed through each fold model's own
preprocessing, so a feature's attribution is its share of the logit difference
between the compound's profile and no response (IG's completeness). Logits, not
probabilities, are attributed: the sigmoid saturates and would squash the
attributions of confident calls.

Inputs that mean the same in every fold model (the g-*/c-* columns, row
statistics, meta indicators, stacked predictions) are averaged over models by
name; PCA / factor-analysis components are fitted per fold, so each fold's
component is its own entry (weighted 1 / number of models)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients

from moa_lit.explain.inputs import NetworkInput
from moa_lit.explain.networks import FoldNetwork
from moa_lit.progress import QUIET, Progress

DEFAULT_STEPS = 16  # the most steps within the 3-minute goal for 4,000 rows (bench.explain): docs/benchmarks.md


def neutral_profiles(features: pd.DataFrame, numeric: list[str]) -> pd.DataFrame:
    baseline = features.copy()
    baseline[numeric] = np.zeros((len(features), len(numeric)), dtype=features[numeric[0]].dtype)
    return baseline


@dataclass
class Attributions:
    names: list[str]  # union of all models' input names
    inputs: dict[str, NetworkInput]  # by name
    values: np.ndarray  # (n_rows, n_targets_per_row, len(names)), averaged over models
    delta: np.ndarray  # (n_rows, n_targets_per_row): mean |completeness error| over models
    logit_gap: np.ndarray  # same shape: mean |logit(x) - logit(baseline)| over models


def integrated_gradients(
    networks: list[FoldNetwork],
    features: pd.DataFrame,
    numeric: list[str],
    targets: np.ndarray,
    n_steps: int = DEFAULT_STEPS,
    method: str = "gausslegendre",
    batch_rows: int = 8192,
    inputs_per_model: list[torch.Tensor] | None = None,
    progress: Progress = QUIET,
) -> Attributions:
    """``targets``: (n_rows, t) target indices to attribute for each row (e.g.
    its compound's top t MoAs). ``inputs_per_model``: each model's transform of
    ``features`` when the caller has it already."""
    targets = np.asarray(targets, dtype=np.int64)
    n, t = targets.shape
    names: dict[str, int] = {}
    inputs: dict[str, NetworkInput] = {}
    for net in networks:
        for inp in net.inputs:
            if inp.name not in names:
                names[inp.name] = len(names)
                inputs[inp.name] = inp
    values = np.zeros((n, t, len(names)))
    delta = np.zeros((n, t))
    gap = np.zeros((n, t))
    baseline_rows = neutral_profiles(features, numeric)
    flat_targets = torch.from_numpy(targets.reshape(-1))
    # captum batches the steps of one example, not the examples: chunk them so
    # one pass holds about batch_rows interpolated rows.
    chunk = max(1, batch_rows // n_steps)
    progress.phase(f"Integrated Gradients, {n} rows x {t} MoAs x {len(networks)} models at {n_steps} steps, chunk",
                   total=len(networks) * -(-n * t // chunk))
    for i, net in enumerate(networks):
        # One transform call for rows and baselines: the preprocessing has a fixed cost per call.
        if inputs_per_model is None:
            both = net.transform(pd.concat([features, baseline_rows], ignore_index=True)).float()
            x, b = both[: len(features)], both[len(features) :]
        else:
            x, b = inputs_per_model[i].float(), net.transform(baseline_rows).float()
        xr, br = x.repeat_interleave(t, dim=0), b.repeat_interleave(t, dim=0)
        flat_targets = flat_targets.to(xr.device)
        ig = IntegratedGradients(net.network)
        parts, errors = [], []
        with torch.enable_grad():
            for start in range(0, len(xr), chunk):
                part = slice(start, start + chunk)
                a, e = ig.attribute(xr[part], baselines=br[part], target=flat_targets[part], n_steps=n_steps,
                                    method=method, return_convergence_delta=True)
                parts.append(a.detach().cpu())
                errors.append(e.detach().cpu())
                progress.advance()
        attr, err = torch.cat(parts), torch.cat(errors)
        with torch.no_grad():
            logits_x = net.network(xr).gather(1, flat_targets[:, None])[:, 0]
            logits_b = net.network(br).gather(1, flat_targets[:, None])[:, 0]
        columns = [names[inp.name] for inp in net.inputs]
        values[:, :, columns] += attr.detach().double().numpy().reshape(n, t, -1)
        delta += np.abs(err.detach().double().numpy()).reshape(n, t)
        gap += np.abs((logits_x - logits_b).double().cpu().numpy()).reshape(n, t)
    k = len(networks)
    return Attributions(list(names), inputs, values / k, delta / k, gap / k)


def top_features(values: np.ndarray, names: list[str], inputs: dict[str, NetworkInput], n: int = 10) -> list[dict]:
    """The n inputs that push the score up most (largest positive attribution)."""
    order = np.argsort(-values, kind="stable")[:n]
    out = []
    for i in order:
        if values[i] <= 0:
            break
        inp = inputs[names[i]]
        entry = {"name": inp.name, "kind": inp.kind, "attribution": round(float(values[i]), 5)}
        if inp.loadings:
            entry["top_loadings"] = [{"column": c, "loading": w} for c, w in inp.loadings]
        out.append(entry)
    return out
