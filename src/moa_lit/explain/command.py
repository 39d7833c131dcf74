"""``explain=true`` of ``python -m moa_lit.predict``: the settings checked, the
batch explained with the networks of the final model predict loaded. Kept apart from
predict.py so predict only calls ``check`` before and ``explain`` after
scoring."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from moa_lit import schema
from moa_lit.errors import MoAError
from moa_lit.explain import attributions
from moa_lit.explain.batch import ExplainedBatch, reference_cache_path, check_count, check_output_folder, explain_batch, load_reference, read_compounds
from moa_lit.explain.networks import from_fold_predictors
from moa_lit.explain.pooling import COMPOUND, POOLINGS
from moa_lit.runs.manifest import RunManifest
from moa_lit.training.final_model import RunModel

DEFAULT_TOP_K = 3
# Measured better than the mean log-odds on OOF drugs of the built-in synthetic data,
# format 2 (docs/benchmarks.md); format 1 had favoured the log-odds.
DEFAULT_POOLING = "mean"
MAX_IG_STEPS = 1024


@dataclass
class ExplainSettings:
    folder: Path
    top_k: int
    k: int
    ig_steps: int
    compounds: str | None
    compound_column: str
    reference: str | None
    pooling: str = DEFAULT_POOLING


def check(cfg: DictConfig, top_k: int, manifest: RunManifest, run_dir: Path, output: Path) -> ExplainSettings:
    """Every explain setting checked before any model is loaded."""
    if manifest.is_blend:
        members = ", ".join(str(m.run) for m in manifest.members)
        raise MoAError(
            f"explain=true: run_dir={run_dir} is a blend of other runs ({members}); "
            "expected a trained or merged run (explain one of the blended runs)"
        )
    n_targets = len(manifest.target_names)
    folder = Path(cfg.explain_dir).expanduser() if cfg.get("explain_dir") else output.with_name(output.stem + "_explained")
    check_output_folder(folder)
    k = cfg.get("k", 5)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise MoAError(f"k={k}: expected a whole number of nearest compounds, at least 1")
    steps = cfg.get("ig_steps", attributions.DEFAULT_STEPS)
    check_count("ig_steps", steps, MAX_IG_STEPS, "Integrated Gradients integration steps")
    pooling = cfg.get("pooling") or DEFAULT_POOLING
    if pooling not in POOLINGS:
        raise MoAError(f"pooling={pooling!r}: expected one of {list(POOLINGS)}")
    return ExplainSettings(folder, top_k or min(DEFAULT_TOP_K, n_targets), k, steps, cfg.get("compounds"),
                           str(cfg.get("compound_column") or COMPOUND), cfg.get("reference"), pooling)


def explain(settings: ExplainSettings, model: RunModel, features: pd.DataFrame, predictions: pd.DataFrame) -> ExplainedBatch:
    """The calls of ``model`` (the run's final model, which made ``predictions``)
    explained with the networks it averages."""
    run_dir, manifest = model.path, model.manifest
    compounds = (read_compounds(settings.compounds, features[schema.ID], settings.compound_column)
                 if settings.compounds else features[schema.ID].to_numpy(dtype=object))
    reference = load_reference(settings.reference, run_dir, manifest.layout, manifest.target_names)
    n_reference = len(pd.unique(reference.drugs[reference.labels.sum(axis=1) > 0]))
    check_count("k", settings.k, n_reference, f"the number of labelled reference compounds in {reference.source}")
    networks = from_fold_predictors(model.predictors)
    probabilities = predictions[manifest.target_names].to_numpy(dtype=np.float64)
    return explain_batch(
        networks, features, probabilities, manifest.target_names, manifest.layout.numeric, compounds, reference,
        top_k=settings.top_k, k=settings.k, ig_steps=settings.ig_steps, pooling=settings.pooling, title=f"MoA calls: {run_dir}",
        reference_cache=reference_cache_path(reference, run_dir, manifest.target_names),
    )
