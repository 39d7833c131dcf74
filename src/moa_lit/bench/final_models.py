"""``python -m moa_lit.bench.final_models``: the final models scored on drugs
no model saw. The built-in synthetic data is split by drug (``--test-drugs``
of the drugs and all their rows held out, labels kept aside), the rest is
written as a Kaggle-layout folder, and one ``experiment=ensemble`` run with
``final_model=both`` trains the MLP and the linear model on the same folds
and refits each on all training rows. Each family and the ensemble are then
scored on the held-out rows three ways: the fold models' average
(``fold_average``), the refitted models (``refit``) and their mean
(``both``), beside the OOF log loss and the per-target prior.

    python -m moa_lit.bench.final_models --n-samples 6000 --epochs 5 num_threads=1
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from moa_lit import load_run, schema
from moa_lit.bench import one_line_errors, refuse_counts_below_one
from moa_lit.config import CONFIG_DIR
from moa_lit.data.sources import load_synthetic
from moa_lit.runs import files
from moa_lit.runs.files import read_json, write_json
from moa_lit.runs.run_dir import RunDir
from moa_lit.scoring.metric import mean_logloss
from moa_lit.scoring.scores import smoothed_prevalence
from moa_lit.targets import with_allowed_targets
from moa_lit.train import train

KINDS = ("fold_average", "refit", "both")


def split_by_drug(data_dir: Path, n_samples: int, fraction: float, seed: int, out: Path) -> pd.DataFrame:
    """Writes the training drugs' rows as a Kaggle-layout folder ``out``;
    returns the held-out rows' labels (sig_id + scored targets)."""
    data = load_synthetic(str(data_dir), n_samples=n_samples)
    drugs = data.drug.to_numpy()
    unique = np.unique(drugs)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(unique, size=max(1, int(round(fraction * len(unique)))), replace=False))
    test = np.isin(drugs, list(held))
    out.mkdir(parents=True, exist_ok=True)
    ids = data.train[schema.ID]
    data.train[~test].to_csv(out / schema.TRAIN_FEATURES, index=False)
    data.train[test].to_csv(out / schema.TEST_FEATURES, index=False)
    for frame, name in ((data.scored, schema.TRAIN_TARGETS_SCORED), (data.nonscored, schema.TRAIN_TARGETS_NONSCORED)):
        table = frame[~test].copy()
        table.insert(0, schema.ID, ids[~test].to_numpy())
        table.to_csv(out / name, index=False)
    pd.DataFrame({schema.ID: ids[~test].to_numpy(), schema.DRUG: drugs[~test]}).to_csv(out / schema.TRAIN_DRUG, index=False)
    labels = data.scored[test].copy()
    labels.insert(0, schema.ID, ids[test].to_numpy())
    return labels.reset_index(drop=True)


def held_out_loss(run: RunDir, features: pd.DataFrame, truth: np.ndarray, names: list[str], kind: str) -> float:
    """Log loss on the held-out rows of ``run`` predicting with ``kind`` final
    models (an ensemble: its members with the kind, weighted as in run.json)."""
    return mean_logloss(truth, load_run(run.path, final_model=kind).predict_proba(features)[names].to_numpy())


@with_allowed_targets
@one_line_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m moa_lit.bench.final_models", description=__doc__.split("\n\n")[0])
    p.add_argument("--n-samples", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--test-drugs", type=float, default=0.2, help="fraction of the drugs held out")
    p.add_argument("--refit-seeds", default="0,1,2")
    p.add_argument("--out", default="outputs/bench/final_models")
    p.add_argument("--data-dir", default="data")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. num_threads=1")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    refuse_counts_below_one(p, args, "--n-samples", "--epochs", "--folds")
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out).expanduser().resolve()
    split = out / "data"
    labels = split_by_drug(Path(args.data_dir).expanduser().resolve(), args.n_samples, args.test_drugs, 0, split)
    run_dir = out / "ensemble"
    overrides = [
        "experiment=ensemble", "data=kaggle", f"data.dir={split}", f"cv.n_folds={args.folds}",
        f"trainer.max_epochs={args.epochs}", "final_model=both", f"refit.seeds=[{args.refit_seeds}]",
        "callbacks.progress_bar.refresh_rate=0", "allow_worse_than_prior=true", f"paths.output_dir={run_dir}",
        *args.overrides,
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR):
        cfg = compose(config_name="train", overrides=overrides)
    t0 = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - t0

    from moa_lit.data.reader import read_features

    ensemble = RunDir(run_dir)
    manifest = ensemble.manifest()
    names = manifest.target_names
    features = read_features(split / schema.TEST_FEATURES, manifest.layout)
    truth = labels.set_index(schema.ID).loc[features[schema.ID].to_numpy(), names].to_numpy(dtype=np.float64)
    train_targets = pd.read_csv(split / schema.TRAIN_TARGETS_SCORED)[names].to_numpy(dtype=np.float64)
    # The smoothed training prevalence, as scores.json's prior: a target with no
    # training positive is not predicted exactly 0.
    prior = mean_logloss(truth, np.broadcast_to(smoothed_prevalence(train_targets), truth.shape))
    rows = []
    for name, run in [*((m, ensemble.member(m)) for m in read_json(ensemble.path / "scores.json")["ensemble"]["weights"]), ("ensemble", ensemble)]:
        oof = run.read(files.SCORES)["oof_logloss"]
        rows.append({"run": name, "oof": oof, **{k: held_out_loss(run, features, truth, names, k) for k in KINDS}})
    header = (
        f"Final models on held-out drugs of the built-in synthetic data: {args.n_samples} rows, "
        f"{len(labels)} held-out rows ({args.test_drugs:.0%} of drugs), {args.folds} folds, {args.epochs} epochs, "
        f"refit seeds [{args.refit_seeds}]; prior on the held-out rows {prior:.5f}; one run, {seconds:.0f} s"
    )
    lines = [header, f"{'run':<10} {'OOF':>9} {'fold_average':>13} {'refit':>9} {'both':>9}"]
    for r in rows:
        lines.append(f"{r['run']:<10} {r['oof']:>9.5f} {r['fold_average']:>13.5f} {r['refit']:>9.5f} {r['both']:>9.5f}")
    print("\n".join(lines), flush=True)
    write_json({"header": header, "prior": prior, "rows": rows}, out / "final_models.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
