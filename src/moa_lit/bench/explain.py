"""Benchmark of predict's explanations (``explain=true``) on a trained run,
printing what the README reports:

- quality: on out-of-fold rows grouped by drug, whether pooling a compound's
  rows ranks a true MoA higher than single rows; on out-of-fold drugs, how
  often the nearest training compound shares a MoA, in the networks' learned
  representation against the rank-Gauss feature space and chance;
- speed: nearest compounds for N query rows against the training rows, and
  Integrated Gradients for N rows x their top 3 MoAs, at ``--threads`` threads;
- fidelity of Integrated Gradients against the number of integration steps:
  error against a many-step reference, completeness error, top-10 agreement.

    python -m moa_lit.bench.explain --run-dir outputs/train/runs/<time> --threads 2

The run's training data is read through its saved config (run it from the
folder the run was trained in), or from ``--reference``."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from moa_lit import schema
from moa_lit.bench import one_line_errors, refuse_counts_below_one
from moa_lit.explain import attributions, neighbours
from moa_lit.explain.batch import load_reference
from moa_lit.explain.networks import from_fold_predictors
from moa_lit.explain.pooling import POOLINGS, pool
from moa_lit.training.final_model import RunModel
from moa_lit.report.build import read_report_inputs
from moa_lit.runs import files
from moa_lit.runs.run_dir import RunDir
from moa_lit.targets import ALLOWED_TARGETS, with_allowed_targets


# How well pooling and nearest compounds do, on out-of-fold drugs.
def best_true_rank(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: the 1-based rank of its highest-ranked true MoA (rows with a label only)."""
    hits = np.take_along_axis(labels > 0.5, np.argsort(-probabilities, axis=1, kind="stable"), axis=1)
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, probabilities.shape[1] + 1)


@dataclass
class PoolingResult:
    n_drugs: int
    n_rows: int
    rows: dict  # single-row metrics, averaged per drug then over drugs
    pooled: dict  # {pooling: metrics of the pooled ranking}


def _metrics(ranks: np.ndarray) -> dict[str, np.ndarray]:
    return {"top1": ranks == 1, "top5": ranks <= 5, "mrr": 1.0 / ranks}


def evaluate_pooling(oof: np.ndarray, labels: np.ndarray, drugs: np.ndarray, is_control: np.ndarray,
                     max_rows: int = 18) -> PoolingResult:
    """On OOF rows of labelled treated drugs with at most ``max_rows`` rows (the
    drugs a drug-aware split holds out whole, so no fold model saw any of their
    rows): single rows against each pooling, every drug weighted equally."""
    keep = ~np.asarray(is_control) & (labels.sum(axis=1) > 0)
    drugs = np.asarray(drugs)
    sizes = pd.Series(drugs[keep]).value_counts()
    keep &= pd.Series(drugs).map(sizes).fillna(0).to_numpy() <= max_rows
    p, y, d = oof[keep], labels[keep], drugs[keep]
    codes, uniques = pd.factorize(pd.Series(d), sort=False)
    rows = {k: float((np.bincount(codes, weights=v) / np.bincount(codes)).mean())
            for k, v in _metrics(best_true_rank(p, y)).items()}
    first_row = np.unique(codes, return_index=True)[1]
    pooled = {how: {k: float(v.mean()) for k, v in _metrics(best_true_rank(pool(p, d, how)[1], y[first_row])).items()}
              for how in POOLINGS}
    return PoolingResult(len(uniques), int(keep.sum()), rows, pooled)


@dataclass
class NeighbourResult:
    n_queries: int
    hit_rate: dict  # {space: share of queries whose nearest reference shares a MoA}
    chance: float  # mean over queries of the share of references sharing a MoA


def evaluate_neighbours(
    networks_by_fold: dict[int, list[neighbours.FoldNetwork]],
    features: pd.DataFrame,
    drugs: np.ndarray,
    folds: np.ndarray,
    labels: np.ndarray,
) -> NeighbourResult:
    """For each fold k: queries are the labelled drugs whose rows all lie in
    fold k (no model of fold k saw them), references the labelled drugs with no
    row in fold k; both embedded by fold k's models (its seeds averaged). A hit:
    the most similar reference shares at least one MoA with the query."""
    drugs, folds = np.asarray(drugs), np.asarray(folds)
    labelled = labels.sum(axis=1) > 0
    drug_folds = pd.crosstab(drugs, folds) > 0  # drugs x folds: has rows there
    whole = drug_folds.sum(axis=1).loc[drugs].to_numpy() == 1  # the row's drug lies in one fold
    hits = {neighbours.LEARNED: [], neighbours.FEATURES: []}
    chance = []
    for fold, networks in sorted(networks_by_fold.items()):
        in_fold = drug_folds[fold].loc[drugs].to_numpy()
        query_rows, ref_rows = labelled & in_fold & whole, labelled & ~in_fold
        if not query_rows.any() or not ref_rows.any():
            continue
        reference = neighbours.build_reference(networks, features.loc[ref_rows], drugs[ref_rows], labels[ref_rows],
                                    [str(i) for i in range(labels.shape[1])])
        q_codes, q_drugs = pd.factorize(pd.Series(drugs[query_rows]), sort=False)
        yq = labels[query_rows][np.unique(q_codes, return_index=True)[1]] > 0.5  # each drug's first row
        yr = labels[ref_rows][np.unique(pd.factorize(pd.Series(drugs[ref_rows]))[0], return_index=True)[1]] > 0.5
        shares = (yq.astype(np.float32) @ yr.T.astype(np.float32)) > 0  # (queries, references)
        chance += list(shares.mean(axis=1))
        q_inputs = [net.transform(features.loc[query_rows]) for net in networks]
        for space in (neighbours.LEARNED, neighbours.FEATURES):
            s = neighbours.similarities(networks, q_inputs, q_codes, len(q_drugs), reference, space)
            best = s.argmax(axis=1)
            hits[space] += list(shares[np.arange(len(best)), best])
    return NeighbourResult(len(chance), {k: float(np.mean(v)) for k, v in hits.items()}, float(np.mean(chance)))


def _load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def pooling_quality(run_dir: Path) -> None:
    inputs = read_report_inputs(run_dir)
    run = RunDir(run_dir)
    folds = pd.read_csv(run.need(files.FOLDS)).set_index(schema.ID)
    oof_ids = run.read(files.OOF)[schema.ID]
    drugs = folds.loc[oof_ids, schema.DRUG].to_numpy()
    r = evaluate_pooling(inputs.oof, inputs.labels, drugs, inputs.is_control)
    print(f"pooling (OOF rows of {r.n_drugs} labelled drugs with <= 18 rows, {r.n_rows} rows; drug-weighted; "
          "rank of the best-ranked true MoA):")
    print(f"  single rows:        top-1 {r.rows['top1']:.3f}  top-5 {r.rows['top5']:.3f}  MRR {r.rows['mrr']:.3f}")
    for how, m in r.pooled.items():
        print(f"  pooled {how:<11} top-1 {m['top1']:.3f}  top-5 {m['top5']:.3f}  MRR {m['mrr']:.3f}")


def neighbour_quality(run_dir: Path, networks, reference, fold_of_row: np.ndarray) -> None:
    by_fold: dict[int, list] = {}
    for net in networks:
        by_fold.setdefault(net.fold, []).append(net)
    t0 = time.perf_counter()
    r = evaluate_neighbours(by_fold, reference.features, reference.drugs, fold_of_row, reference.labels)
    print(f"nearest training compound shares a MoA with the query ({r.n_queries} OOF labelled drugs, "
          f"{time.perf_counter() - t0:.1f} s):")
    print(f"  learned representation: {r.hit_rate[neighbours.LEARNED]:.3f}")
    print(f"  rank-Gauss features:    {r.hit_rate[neighbours.FEATURES]:.3f}")
    print(f"  chance (random labelled training compound): {r.chance:.3f}")


def _queries(reference, test: pd.DataFrame | None, n: int) -> pd.DataFrame:
    rows = test[test[schema.CP_TYPE] == schema.TREATED] if test is not None else reference.features.iloc[:0]
    if len(rows) < n:
        rows = pd.concat([rows, reference.features.iloc[: n - len(rows)]], ignore_index=True)
    return rows.iloc[:n].reset_index(drop=True)


def neighbour_speed(networks, reference, queries: pd.DataFrame, target_names, k: int = 5) -> None:
    """The reference side is built once (preprocessing and embedding every
    training row with every model) and cached by predict; timed apart."""
    t0 = time.perf_counter()
    ref = neighbours.build_reference(networks, reference.features, reference.drugs, reference.labels, target_names)
    build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        neighbours.save_reference(ref, Path(tmp) / "reference.npz")
        saved = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = neighbours.load_reference(Path(tmp) / "reference.npz")
        loaded = time.perf_counter() - t0
    t0 = time.perf_counter()
    q_codes = np.arange(len(queries))
    q_inputs = [net.transform(queries) for net in networks]
    preprocess = time.perf_counter() - t0
    times = {}
    for space in (neighbours.LEARNED, neighbours.FEATURES):
        t0 = time.perf_counter()
        s = neighbours.similarities(networks, q_inputs, q_codes, len(queries), ref, space)
        neighbours.nearest(s, k)
        times[space] = time.perf_counter() - t0
    print(f"nearest compounds: {len(queries)} query rows (each its own compound) vs {len(reference.features)} "
          f"training rows ({len(ref.drugs)} labelled compounds), {len(networks)} models, k={k}, cached reference:")
    print(f"  total {preprocess + times[neighbours.LEARNED] + loaded:.2f} s = preprocessing the queries with each "
          f"model {preprocess:.2f} s (the same transform predict applies) + embedding, comparing and ranking "
          f"{times[neighbours.LEARNED]:.2f} s + loading the cache {loaded:.2f} s; rank-Gauss baseline: compare "
          f"and rank {times[neighbours.FEATURES]:.2f} s")
    print(f"  building the reference once (first explain=true of a run): {build:.2f} s, writing its cache {saved:.2f} s")


def ig_fidelity(networks, rows: pd.DataFrame, numeric, targets, steps: list[int], reference_steps: int) -> None:
    ref = attributions.integrated_gradients(networks, rows, numeric, targets, n_steps=reference_steps)
    ref_v = ref.values.reshape(-1, ref.values.shape[-1])
    ref_top = np.argsort(-ref_v, axis=1)[:, :10]
    print(f"Integrated Gradients fidelity on {len(rows)} rows x {targets.shape[1]} MoAs, {len(networks)} models "
          f"(against {reference_steps} steps; completeness error = |sum of attributions - logit difference| / "
          "|logit difference|):")
    print("  steps  s/row-call  rel. L2 error  completeness error  top-10 overlap")
    for n_steps in steps:
        t0 = time.perf_counter()
        a = attributions.integrated_gradients(networks, rows, numeric, targets, n_steps=n_steps)
        seconds = time.perf_counter() - t0
        v = a.values.reshape(-1, a.values.shape[-1])
        rel = np.linalg.norm(v - ref_v, axis=1) / np.maximum(np.linalg.norm(ref_v, axis=1), 1e-12)
        top = np.argsort(-v, axis=1)[:, :10]
        overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top, ref_top)])
        completeness = a.delta.mean() / max(a.logit_gap.mean(), 1e-12)
        print(f"  {n_steps:5d}  {seconds / v.shape[0]:.2e}    {np.median(rel):.4f}         {completeness:.4f}"
              f"              {overlap:.3f}")


def ig_speed(networks, rows: pd.DataFrame, numeric, targets, n_steps: int) -> None:
    t0 = time.perf_counter()
    attributions.integrated_gradients(networks, rows, numeric, targets, n_steps=n_steps)
    seconds = time.perf_counter() - t0
    print(f"Integrated Gradients: {len(rows)} rows x top {targets.shape[1]} MoAs, {n_steps} steps, "
          f"{len(networks)} models: {seconds:.1f} s")


@with_allowed_targets
@one_line_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--reference", default=None, help="training data folder (default: the run's own)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=4000)
    parser.add_argument("--steps", default="4,8,16,32,64", help="IG step counts compared for fidelity")
    parser.add_argument("--ig-steps", type=int, default=attributions.DEFAULT_STEPS, help="steps of the timed IG run")
    parser.add_argument("--reference-steps", type=int, default=256)
    parser.add_argument("--fidelity-rows", type=int, default=100)
    parser.add_argument("--skip", default="", help="comma-separated: quality,fidelity,neighbours,ig")
    args = parser.parse_args(argv)
    refuse_counts_below_one(parser, args, "--threads", "--queries", "--ig-steps", "--reference-steps", "--fidelity-rows")
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} ({args.threads} threads); "
          f"{_load()} at start")
    run = RunDir(args.run_dir)
    manifest = run.manifest()
    model = RunModel.load(run.path)
    networks = from_fold_predictors(model.predictors)
    reference = load_reference(args.reference, args.run_dir, manifest.layout, manifest.target_names)
    numeric = manifest.layout.numeric
    print(f"run: {args.run_dir} ({len(networks)} seed x fold models); training data: {reference.source}")

    if "quality" not in skip:
        pooling_quality(args.run_dir)
        folds = pd.read_csv(run.need(files.FOLDS)).set_index(schema.ID)
        neighbour_quality(args.run_dir, networks, reference, folds.loc[reference.features[schema.ID], "fold"].to_numpy())

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    test = None
    if not {"neighbours", "ig", "fidelity"} <= skip:
        try:
            test = instantiate(OmegaConf.create(run.read(files.CONFIG)).data, _execution_whitelist_=ALLOWED_TARGETS).test
        except Exception:
            test = None
        queries = _queries(reference, test, args.queries)
        p = model.probabilities(queries)
        targets = np.argsort(-p, axis=1)[:, :3]
    if "fidelity" not in skip:
        ig_fidelity(networks, queries.iloc[: args.fidelity_rows], numeric, targets[: args.fidelity_rows],
                    [int(s) for s in args.steps.split(",")], args.reference_steps)
    if "neighbours" not in skip:
        neighbour_speed(networks, reference, queries, manifest.target_names)
    if "ig" not in skip:
        ig_speed(networks, queries, numeric, targets, args.ig_steps)
    print(_load() + " at the end")


if __name__ == "__main__":
    main()
