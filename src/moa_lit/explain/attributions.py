"""Integrated Gradients (captum) of each row's MoA logits with respect to the
network inputs, averaged over the run's seed x fold models (docs/explain.md).
Logits, not probabilities, are attributed: the sigmoid saturates and would
squash the attributions of confident calls. PCA / factor-analysis components
are fitted per fold, so each fold's component is its own entry; every other
input means the same in every model and is averaged by name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients

from moa_lit.explain.networks import FoldNetwork, NetworkInput
from moa_lit.progress import QUIET, Progress

DEFAULT_STEPS = 16  # the most steps within the 3-minute goal for 4,000 rows (bench.explain): docs/benchmarks.md


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
    inputs_per_model: list[torch.Tensor] | None = None,
    progress: Progress = QUIET,
) -> Attributions:
    """``targets``: (n_rows, t) target indices to attribute for each row (e.g.
    its compound's top t MoAs). ``inputs_per_model``: each model's transform of
    ``features`` when the caller has it already."""
    targets = np.asarray(targets, dtype=np.int64)
    n, t = targets.shape
    inputs = {inp.name: inp for net in networks for inp in net.inputs}  # shared inputs once, by name
    names = {name: i for i, name in enumerate(inputs)}
    values = np.zeros((n, t, len(names)))
    delta = np.zeros((n, t))
    gap = np.zeros((n, t))
    # Baseline: the same rows with every g-*/c-* value 0, a profile with no response (the values are centred).
    baseline_rows = features.copy()
    baseline_rows[numeric] = np.zeros((len(features), len(numeric)), dtype=features[numeric[0]].dtype)
    flat_targets = torch.from_numpy(targets.reshape(-1))
    # captum batches the steps of one example, not the examples: chunk them so
    # one pass holds about 8192 interpolated rows.
    chunk = max(1, 8192 // n_steps)
    progress.phase(f"Integrated Gradients, {n} rows x {t} MoAs x {len(networks)} models at {n_steps} steps, chunk",
                   total=len(networks) * -(-n * t // chunk))
    for i, net in enumerate(networks):
        x = (net.transform(features) if inputs_per_model is None else inputs_per_model[i]).float()
        b = net.transform(baseline_rows).float()
        xr, br = x.repeat_interleave(t, dim=0), b.repeat_interleave(t, dim=0)
        flat_targets = flat_targets.to(xr.device)
        ig = IntegratedGradients(net.network)
        parts, errors = [], []
        with torch.enable_grad():
            for start in range(0, len(xr), chunk):
                part = slice(start, start + chunk)
                a, e = ig.attribute(xr[part], baselines=br[part], target=flat_targets[part], n_steps=n_steps,
                                    method="gausslegendre", return_convergence_delta=True)
                parts.append(a.detach().cpu())
                errors.append(e.detach().cpu())
                progress.advance()
        attr, err = torch.cat(parts), torch.cat(errors)
        with torch.no_grad():
            logits_x = net.network(xr).gather(1, flat_targets[:, None])[:, 0]
            logits_b = net.network(br).gather(1, flat_targets[:, None])[:, 0]
        columns = [names[inp.name] for inp in net.inputs]
        values[:, :, columns] += attr.double().numpy().reshape(n, t, -1)
        delta += np.abs(err.double().numpy()).reshape(n, t)
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
