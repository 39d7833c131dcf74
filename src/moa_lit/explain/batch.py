"""``explain=true`` of ``python -m moa_lit.predict``: the settings checked
before any model is loaded (``check``), then the batch explained with the
networks of the final model predict loaded (``explain``): compound calls,
attributions of each call, nearest known compounds, written as ``calls.csv``,
``explanations.json`` and ``page.html`` into one folder. Everything is
computed and checked before the first file is written, and each file is
written atomically, so a failure leaves no half-written output."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from moa_lit import schema
from moa_lit.data import reader
from moa_lit.errors import MoAError
from moa_lit.targets import ALLOWED_TARGETS, check_targets
from moa_lit.explain import attributions, neighbours, page
from moa_lit.explain.networks import FoldNetwork, from_fold_predictors
from moa_lit.explain.pooling import COMPOUND, POOLINGS, compound_calls
from moa_lit.progress import QUIET, Progress
from moa_lit.runs import files
from moa_lit.runs.manifest import RunManifest
from moa_lit.runs.run_dir import RunDir
from moa_lit.training.final_model import RunModel

log = logging.getLogger("moa_lit.explain")

CALLS = "calls.csv"
EXPLANATIONS = "explanations.json"
PAGE = "page.html"
OUTPUTS = (CALLS, EXPLANATIONS, PAGE)
REFERENCE_CACHE_DIR = ".moa_cache"  # the data reader's cache folder
N_TOP_FEATURES = 10
DEFAULT_TOP_K = 3
# Measured better than the mean log-odds on OOF drugs of the built-in synthetic data,
# format 2 (docs/benchmarks.md); format 1 had favoured the log-odds.
DEFAULT_POOLING = "mean"
MAX_IG_STEPS = 1024
POOLING_TEXT = {
    "mean": "mean of the rows' probabilities",
    "logit_mean": "mean of the rows' log-odds (a geometric pooling of their probabilities)",
}


# ---------------------------------------------------------------- checked inputs
def read_compounds(path: Path, ids: pd.Series, column: str = COMPOUND) -> np.ndarray:
    """The compound id of every input row from a CSV of sig_id and ``column``
    (extra rows, e.g. a whole train_drug.csv, are allowed)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MoAError(f"compounds={path}: no such file; expected a CSV of {schema.ID},{column}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:
        raise MoAError(f"compounds={path}: cannot be read as CSV ({type(err).__name__}); expected {schema.ID},{column}") from None
    table.columns = [str(c).strip() for c in table.columns]
    for needed in (schema.ID, column):
        if needed not in table.columns:
            raise MoAError(f"compounds={path}: no column {needed!r} (found {list(table.columns)}); expected {schema.ID},{column}"
                           + (" (set compound_column=...)" if needed == column else ""))
    dup = table[schema.ID].duplicated()
    if dup.any():
        raise MoAError(f"compounds={path}: {schema.ID} {table[schema.ID][dup].iloc[0]!r} appears more than once; expected one compound per row")
    mapping = table.set_index(schema.ID)[column]
    found = ids.map(mapping)
    missing = found.isna().to_numpy()
    if missing.any():
        raise MoAError(
            f"compounds={path}: {int(missing.sum())} of {len(ids)} input {schema.ID}s are not in it (first: "
            f"{ids[missing].iloc[0]!r}); expected every row of the input to have a {column}"
        )
    blank = (found.str.strip() == "").to_numpy()
    if blank.any():
        raise MoAError(f"compounds={path}: empty {column} for {schema.ID} {ids[blank].iloc[0]!r}; expected an id on every row")
    return found.to_numpy(dtype=object)


def check_count(key: str, value, upper: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
        raise MoAError(f"{key}={value}: expected a whole number from 1 to {upper} ({what})")
    return value


def check_output_folder(folder: Path) -> None:
    """The folder is new, empty, or holds an earlier explanation (whose three
    files are replaced); anything else there is not ours to overwrite."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MoAError(f"explain_dir={folder}: is a file; expected a folder for {', '.join(OUTPUTS)}")
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.name not in OUTPUTS)
        if others:
            raise MoAError(f"explain_dir={folder}: already holds {others[0]!r}; expected a new or empty folder "
                           "(or one holding only an earlier explanation)")


@dataclass
class ReferenceData:
    features: pd.DataFrame  # treated training rows
    drugs: np.ndarray
    labels: np.ndarray  # in the run's target order
    source: str
    fingerprint: dict | None = None  # the data reader's: file paths, sizes, modification times


def load_reference(reference: str | None, run_dir: Path, layout, target_names: list[str]) -> ReferenceData:
    """The labelled training compounds to compare with: the folder given as
    ``reference`` (Kaggle layout, with train_drug.csv), or else the data the run
    was trained on, through its saved config."""
    # Training data oddities (targets without positives, ...) were reported when
    # the run was trained; repeating them here would only bury predict's output.
    data_log = logging.getLogger("moa_lit.data")
    level = data_log.level
    data_log.setLevel(logging.ERROR)
    run = RunDir(run_dir)
    config = run.path / files.CONFIG
    try:
        if reference:
            data = reader.read_dataset(reference, n_genes=len(layout.genes), n_cells=len(layout.cells))
        else:
            from hydra.utils import instantiate

            data_cfg = OmegaConf.create(run.read(files.CONFIG)).data
            check_targets(OmegaConf.create({"data": data_cfg}))
            data = instantiate(data_cfg, _execution_whitelist_=ALLOWED_TARGETS)
    except Exception as err:
        if reference or isinstance(err, MoAError):
            raise
        raise MoAError(
            f"explain=true needs the training compounds to find neighbours, and the run's data "
            f"({config}) cannot be read here ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
            "expected reference=<folder with train_features.csv, train_targets_scored.csv, train_drug.csv>"
        ) from None
    finally:
        data_log.setLevel(level)
    source = str(reference) if reference else f"the run's training data ({config})"
    if data.drug is None:
        raise MoAError(f"reference {source}: no {schema.TRAIN_DRUG}; expected drug ids to name the known compounds")
    absent = [n for n in target_names if n not in data.scored.columns]
    if absent:
        raise MoAError(f"reference {source}: no target {absent[0]!r} of the run; expected the run's training targets")
    treated = ~data.train_is_control
    return ReferenceData(
        data.train.loc[treated].reset_index(drop=True),
        data.drug.to_numpy()[treated],
        data.scored[target_names].to_numpy()[treated].astype(np.float64),
        source,
        data.fingerprint,
    )


def reference_cache_path(reference: ReferenceData, run_dir: Path, target_names: list[str]) -> Path | None:
    """Where the reference's vectors are cached: beside the data reader's own
    cache in the training data folder, named by a hash of the training files'
    fingerprint and of the run's model files (so a changed file is a new entry)."""
    fingerprint = reference.fingerprint or {}
    source = fingerprint.get(schema.TRAIN_FEATURES)
    if not isinstance(source, dict) or "path" not in source:
        return None
    run = RunDir(run_dir)
    key = json.dumps(
        {
            "data": {k: v for k, v in fingerprint.items() if isinstance(v, dict)},
            "run": run.text(files.RUN_MANIFEST) or "",
            "models": [(str(p.relative_to(run.path)), p.stat().st_size, p.stat().st_mtime_ns) for p in run.model_files()],
            "run_dir": str(run.path.resolve()),
            "targets": list(target_names),
        },
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(source["path"]).parent / REFERENCE_CACHE_DIR / f"explain-reference-{digest}.npz"


# ---------------------------------------------------------------- the command
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
    """Every explain setting checked before any model is loaded (the typed
    settings, ``PredictConfig``, have checked each key alone)."""
    if manifest.is_blend:
        members = ", ".join(str(m.run) for m in manifest.members)
        raise MoAError(
            f"explain=true: run_dir={run_dir} is a blend of other runs ({members}); "
            "expected a trained or merged run (explain one of the blended runs)"
        )
    n_targets = len(manifest.target_names)
    folder = Path(cfg.explain_dir).expanduser() if cfg.get("explain_dir") else output.with_name(output.stem + "_explained")
    check_output_folder(folder)
    steps = cfg.get("ig_steps", attributions.DEFAULT_STEPS)
    check_count("ig_steps", steps, MAX_IG_STEPS, "Integrated Gradients integration steps")
    pooling = cfg.get("pooling") or DEFAULT_POOLING
    if pooling not in POOLINGS:
        raise MoAError(f"pooling={pooling!r}: expected one of {list(POOLINGS)}")
    return ExplainSettings(folder, top_k or min(DEFAULT_TOP_K, n_targets), cfg.get("k", 5), steps, cfg.get("compounds"),
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


# ---------------------------------------------------------------- the explanation
@dataclass
class ExplainedBatch:
    calls: pd.DataFrame
    explanations: dict
    html: str
    progress: Progress = QUIET

    def write(self, folder: Path) -> list[Path]:
        folder = Path(folder)
        self.progress.phase(f"writing {folder}")
        files.write_csv(self.calls, folder / CALLS)
        files.write_json(self.explanations, folder / EXPLANATIONS)
        files.write_text(self.html, folder / PAGE)
        self.progress.end()
        return [folder / name for name in OUTPUTS]


def explain_batch(
    networks: list[FoldNetwork],
    features: pd.DataFrame,
    probabilities: np.ndarray,
    target_names: list[str],
    numeric: list[str],
    compounds: np.ndarray,
    reference: ReferenceData,
    top_k: int = 3,
    k: int = 5,
    ig_steps: int = attributions.DEFAULT_STEPS,
    title: str = "",
    pooling: str = "mean",
    reference_cache: Path | None = None,
) -> ExplainedBatch:
    t0 = time.perf_counter()
    progress = Progress("explain")  # minutes on a few thousand rows: say what is being done
    is_control = (features[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    compounds = np.asarray(compounds, dtype=object)
    calls = compound_calls(probabilities, features[schema.ID].to_numpy(), compounds, target_names, top_k, is_control, pooling)
    rows = features.loc[~is_control].reset_index(drop=True)
    q_codes, q_ids = pd.factorize(pd.Series(compounds[~is_control]), sort=False)
    # calls holds n_calls rows per compound, in q_ids' order (both first seen), best first.
    n_calls = min(top_k, len(target_names))
    index = {n: i for i, n in enumerate(target_names)}
    call_targets = calls["moa"].map(index).to_numpy(np.int64).reshape(len(q_ids), n_calls)
    compounds_out, derived, t_attr, t_near = [], {}, 0.0, 0.0
    if len(rows):  # else only control rows: nothing to call, explain or compare
        progress.phase(f"preprocessing {len(rows)} treated rows, model", total=len(networks))
        q_inputs = []
        for net in networks:
            q_inputs.append(net.transform(rows))
            progress.advance()
        attr = attributions.integrated_gradients(networks, rows, numeric, call_targets[q_codes], n_steps=ig_steps,
                                                 inputs_per_model=q_inputs, progress=progress)
        t_attr = time.perf_counter() - t0
        ref = cached_reference(networks, reference, target_names, reference_cache, progress)
        progress.phase(f"nearest of {len(q_ids)} compounds among {len(ref.drugs)} known compounds")
        near = {space: neighbours.nearest(neighbours.similarities(networks, q_inputs, q_codes, len(q_ids), ref, space), k)
                for space in (neighbours.LEARNED, neighbours.FEATURES)}
        t_near = time.perf_counter() - t0 - t_attr
        progress.phase("top inputs of each call, compound", total=len(q_ids))
        for g, compound in enumerate(q_ids):
            mine = q_codes == g
            entry = {
                COMPOUND: str(compound),
                "sig_ids": [str(s) for s in rows[schema.ID][mine]],
                "calls": [],
                "nearest_compounds": _neighbour_list(near[neighbours.LEARNED], g, ref),
                "nearest_compounds_feature_space": _neighbour_list(near[neighbours.FEATURES], g, ref),
            }
            mean_attr = attr.values[mine].mean(axis=0)  # (n_calls, inputs)
            for c, call in enumerate(calls.iloc[g * n_calls : (g + 1) * n_calls].itertuples()):
                top = attributions.top_features(mean_attr[c], attr.names, attr.inputs, N_TOP_FEATURES)
                for item in top:
                    if item["kind"] != "column":
                        derived[item["name"]] = {k2: v for k2, v in item.items() if k2 in ("kind", "top_loadings")}
                entry["calls"].append(
                    {
                        "rank": int(call.rank), "moa": call.moa, "probability": float(call.probability),
                        "row_min": float(call.row_min), "row_max": float(call.row_max), "row_std": float(call.row_std),
                        "rows_ranking_first": float(call.rows_ranking_first),
                        "ig_completeness_error": float(attr.delta[mine, c].mean()),
                        "logit_gap": float(attr.logit_gap[mine, c].mean()),
                        "top_features": top,
                    }
                )
            compounds_out.append(entry)
            progress.advance()
    explanations = {
        "title": title,
        "method": {
            "pooling": POOLING_TEXT[pooling],
            "attributions": f"Integrated Gradients (captum, {ig_steps} Gauss-Legendre steps) of each call's logit, "
                            "baseline: the same rows with every g-*/c-* value 0, averaged over "
                            f"{len(networks)} seed x fold models and over the compound's rows",
            "neighbours": "cosine similarity of compound profiles (mean of row vectors) in each fold model's "
                          "penultimate representation, averaged over models; feature_space: the same in the "
                          "rank-Gauss g-*/c-* inputs",
            "reference": reference.source,
            "models": [net.label for net in networks],
        },
        "timings_s": {"attributions": round(t_attr, 2), "neighbours": round(t_near, 2)},
        "compounds": compounds_out,
        "control_only_compounds": sorted({str(c) for c in compounds[is_control]} - {str(c) for c in q_ids}),
        "derived_inputs": derived,
    }
    progress.phase(f"rendering the page of {len(compounds_out)} compounds")
    return ExplainedBatch(calls, explanations, page.render(explanations), progress)


def cached_reference(networks: list[FoldNetwork], reference: ReferenceData, target_names: list[str],
                     cache: Path | None, progress: Progress = QUIET) -> neighbours.Reference:
    """The reference compounds' vectors, from the cache when it holds them."""
    if cache is not None and cache.is_file():
        progress.phase(f"reference vectors from {cache}")
        ref = neighbours.load_reference(cache)
        if ref is not None and ref.n_models == len(networks):
            return ref
    ref = neighbours.build_reference(networks, reference.features, reference.drugs, reference.labels, target_names,
                                     progress)
    if cache is not None:
        try:
            neighbours.save_reference(ref, cache)
        except OSError as err:  # a read-only data folder: no cache, same result
            log.info("reference cache not written (%s)", err)
    return ref


def _neighbour_list(near: tuple[np.ndarray, np.ndarray], g: int, ref: neighbours.Reference) -> list[dict]:
    idx, sim = near
    return [
        {"drug_id": str(ref.drugs[i]), "moas": ref.moas[i], "similarity": round(float(s), 4)}
        for i, s in zip(idx[g], sim[g])
    ]
