"""``python -m moa_lit.bench.quality``: the quality benchmark across data variants.

For each data variant of the built-in generator (``data.variant``: saturating,
additive, interaction; and gaussian_additive, see EXTRA_VARIANTS) every setup
below is a full cross-validated run (the same folds and seeds for all) scored
twice: OOF log loss over new-drug rows (treated rows of drugs kept whole in
their fold; all rows in quality.json too), and log loss of its
``submission.csv`` on the variant's held-out test rows, whose drugs are absent
from training (labels from ``moa_lit.data.synthetic.heldout_test_labels``,
never seen by training). Prints,
per variant, OOF, test, the gap test - OOF, wall time and each setup's rank on
the test; then the mean test rank of each setup across variants.

Two reference rows, plain_linear and plain_mlp, are the plain ~30-line scripts
of issue 21 (``moa_lit.bench.plain_reference``: plain PyTorch, pandas and
scikit-learn on the CSV files, no moa-lit code path), trained on all treated
training rows and scored on the same held-out test rows; they have no OOF.

    python -m moa_lit.bench.quality                                  # full size: hours on 2 CPU cores
    python -m moa_lit.bench.quality --n-samples 2000 --epochs 3 --only prior,linear,baseline
    python -m moa_lit.bench.quality --jobs 4 trainer=gpu             # 4 runs at a time, cores/4 threads each
    python -m moa_lit.bench.quality --only prior,plain_linear,plain_mlp,mlp,linear,best,ensemble,refit
    python -m moa_lit.bench.quality --variants saturating --only ablation   # issue 21's ablation (ABLATION)
    python -m moa_lit.bench.quality --variants saturating --only levers     # and its levers (LEVERS)

A setup that fails (e.g. pretraining on data whose non-scored targets have no
positive) is reported with its error and the others go on.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from moa_lit import schema
from moa_lit.bench import one_line_errors, refuse_counts_below_one
from moa_lit.errors import MoAError
from moa_lit.runs.files import SCORES, SUBMISSION, read_json, write_json
from moa_lit.targets import with_allowed_targets


@dataclass(frozen=True)
class Setup:
    """One row of the table: a preset or model family as Hydra overrides."""

    name: str
    overrides: list[str]
    # Narrower networks for --small (tests and quick checks).
    small: list[str] = field(default_factory=lambda: ["model.net.hidden_size=32"])
    description: str = ""


CNN_SMALL = ["model.net.channels=8", "model.net.length=8", "model.net.conv_channels=16"]

# The setups, in table order. Add a preset here (one entry) to benchmark it.
SETUPS = [
    Setup("mlp", [], description="the default run (model=mlp, default features)"),
    Setup("baseline", ["experiment=baseline"], description="MLP, rank-Gauss features (scratch)"),
    Setup("+pca", ["experiment=baseline", "features.pca_genes=50", "features.pca_cells=15"], description="+ PCA of g-* (50) and c-* (15)"),
    Setup("+factor_analysis", ["experiment=baseline", "features.factor_analysis_genes=20", "features.factor_analysis_cells=5"], description="+ factor analysis of g-* (20) and c-* (5)"),
    Setup("+row_stats", ["experiment=baseline", "features.row_stats=true"], description="+ row mean/std/skew/kurtosis"),
    Setup("+variance_threshold", ["experiment=baseline", "features.variance_threshold=0.8"], description="+ variance threshold 0.8"),
    Setup("+pretrain", ["experiment=baseline", "pretrain.enabled=true"], description="+ non-scored pretraining, then transfer (vs baseline: scratch)"),
    Setup("+stack", ["experiment=baseline", "stack.enabled=true"], description="+ stacked non-scored predictions as features"),
    Setup("+seeds", ["experiment=baseline", "seeds=[0,1,2]"], description="+ 3 seeds averaged"),
    Setup("+clip", ["experiment=baseline", "predict.clip=[0.0005,0.999]"], description="+ predictions clipped to [0.0005, 0.999]"),
    Setup("resnet", ["experiment=baseline", "model=resnet"], description="residual MLP"),
    # Half the original's channels: the full 256/512 net costs several MLP epochs per epoch on CPU.
    Setup(
        "cnn1d",
        ["experiment=baseline", "model=cnn1d", "model.net.channels=128", "model.net.conv_channels=256"],
        small=CNN_SMALL,
        description="1D-CNN over a learned feature ordering (128 x 16, 256 conv channels)",
    ),
    Setup("linear", ["experiment=baseline", "model=linear"], small=[], description="batch norm + one linear layer"),
    Setup("best", ["experiment=best"], small=["ensemble.models.mlp.net.hidden_size=32"],
          description="the experiment=best preset: MLP + linear blended, each calibrated (affine)"),
    # issue 14: the adaptive ensemble (nested OOF) and the baseline with models refitted on all rows.
    Setup("ensemble", ["experiment=ensemble"], small=["ensemble.models.mlp.net.hidden_size=32"],
          description="MLP + linear on the same folds, nested blend weights (experiment=ensemble)"),
    Setup("refit", ["experiment=baseline", "final_model=refit"],
          description="baseline MLP, submission from 3 seeds refitted on all rows (OOF as baseline)"),
]
# Issue 21's ablation: moa-lit's linear model and its default MLP, each moved one
# difference at a time toward the plain scripts (REFERENCES), then all at once.
# Not in the default table: --only ablation runs these with the two references.
LAST_EPOCH = "callbacks.model_checkpoint.monitor=null"  # the last epoch's model, not the best
PLAIN_SCHEDULE = ["loader.batch_size=128", "trainer.max_epochs=20", "model.scheduler.max_lr=0.01"]
ALL_ROWS = ["final_model=refit", "refit.seeds=[0]"]  # one model on every treated row, not 5 fold models
# torch's OneCycleLR defaults, which the plain scripts keep (moa-lit: warm-up 0.1, start max_lr / 1e3).
ONECYCLE_SHAPE = ["model.scheduler.pct_start=0.3", "model.scheduler.div_factor=25"]
PLAIN_RECIPE = [*PLAIN_SCHEDULE, *ONECYCLE_SHAPE, "model.label_smoothing=0.001", LAST_EPOCH, "final_model=refit", "refit.seeds=[0,1,2]"]


def _ablation(base: str, overrides: list[str], small: list[str]) -> list[Setup]:
    steps = {
        "": ([], "moa-lit as configured: batch 512, 8 epochs, fold models averaged, best epoch"),
        "+b128x20": (PLAIN_SCHEDULE, "batch 128, 20 epochs, OneCycle max_lr 1e-2 (the plain schedule; lin+b128x20 is experiment=linear)"),
        "+onecycle": (ONECYCLE_SHAPE, "OneCycle shaped as torch's default: warm-up 30%, starting at max_lr / 25"),
        "+all_rows": (ALL_ROWS, "one model on all treated rows (refit, best-epoch count) instead of 5 fold models"),
        "+last_epoch": ([LAST_EPOCH], "the last epoch's model instead of the best on new-drug rows"),
        "+smoothing": (["model.label_smoothing=0.001"], "label smoothing 0.001"),
        "+seeds": (["seeds=[0,1,2]"], "3 seeds averaged"),
        "+q1000": (["features.n_quantiles=1000"], "rank-Gauss with 1,000 quantiles (both use 100)"),
        "_plain": (PLAIN_RECIPE, "the plain recipe run by moa-lit: every step but q1000 at once (3 refit seeds)"),
    }
    if base == "lin":
        steps["+dropout"] = (["model.net.dropout_input=0.2"], "input dropout 0.2 (moa-lit's linear: 0)")
        steps["+smoothing+onecycle"] = (["model.label_smoothing=0.001", *ONECYCLE_SHAPE],
                                        "the two steps that cost no time, together")
        steps["_plain"] = ([*PLAIN_RECIPE, "model.net.dropout_input=0.2"], steps["_plain"][1])
    return [Setup(f"{base}{k}", [*overrides, *o], small=small, description=d) for k, (o, d) in steps.items()]


ABLATION = [*_ablation("lin", ["experiment=baseline", "model=linear"], []), *_ablation("mlp", [], Setup("x", []).small)]
# Issue 21's levers for new-drug quality, each alone on the default run (--only levers).
TABM_SMALL = ["model.net.hidden_size=32", "model.net.k=4"]
LEVERS = [
    Setup("mlp+calibration", ["calibration.method=affine", "calibration.strength=1"],
          description="per-target affine calibration on the nested new-drug OOF (strength 1)"),
    Setup("mlp+centring", ["features.control_centring=true"], description="g-/c- centred on the training controls' mean per time and dose"),
    Setup("mlp+control_aug", ["loader.control_augmentation=0.5"], description="half the training rows get x + ctl_a - ctl_b each epoch"),
    Setup("mlp+epochs16_refit", ["trainer.max_epochs=16", "final_model=refit"],
          description="16 epochs (best on new-drug OOF), then 3 seeds refitted on all rows for that count"),
    # The levers that helped on both measured variants, together (issue 21, point 5).
    Setup("ens+calib", ["experiment=ensemble", "calibration.method=affine", "calibration.strength=1"],
          small=["ensemble.models.mlp.net.hidden_size=32"],
          description="experiment=ensemble + per-target affine calibration (strength 1)"),
    Setup("tabm", ["model=tabm"], small=TABM_SMALL, description="TabM: 16 weight-sharing members of 2 x 256, loss averaged over members"),
    # The configured embeddings (48 bins x 16) cost ~30x an MLP step on one CPU thread; 16 x 4 ~9x.
    Setup("tabm+ple", ["model=tabm", "model.net.num_embeddings=piecewise", "model.net.n_bins=16", "model.net.d_embedding=4"],
          small=TABM_SMALL, description="TabM with piecewise-linear embeddings, 16 bins x 4 values per column"),
]
# The plain scripts of issue 21 (moa_lit.bench.plain_reference), by row name:
# the script's kind, whether it has the one-hot time and dose, and the row's description. Not moa-lit runs: no OOF.
REFERENCES = {
    "plain_linear": ("linear", True, "plain PyTorch script: rank-Gauss + one-hot time/dose, BN, dropout 0.2, linear; "
                               "all treated rows, 20 epochs, 3 seeds"),
    "plain_mlp": ("mlp", True, "the same plain script with 2 hidden layers of 1,024 (weight norm, dropout 0.5)"),
}
# Benchmark-only data variants: a built-in variant with other generator settings
# (SyntheticConfig fields that data= does not expose). Their runs read the
# generated folder as data=kaggle.
EXTRA_VARIANTS = {
    # Where a linear model should win: the additive signal under near-Gaussian
    # noise (Student-t, 100 degrees of freedom), where logistic regression is
    # close to the best model; every drug active; 2 rows per ordinary drug.
    # A weak signal did not do it: at 6,000 rows, signal_strength 0.35 put the
    # plain linear script below the prior (it overfits) and the plain MLP above.
    "gaussian_additive": {"variant": "additive", "noise_df": 100.0, "inactive_fraction": 0.0, "rows_per_drug": 2},
}
NEEDS_SYNTHETIC = "the quality benchmark needs the built-in synthetic data (its held-out test labels): drop data=..."
# The ablation's one reference of its own: the meta features are the one
# difference the two sides do not have, so the plain script drops them.
REFERENCES["plain_linear-meta"] = ("linear", False, "plain_linear without the one-hot time and dose")
BLENDED = ["baseline", "resnet", "cnn1d", "linear"]
NAMES = ["prior", "plain_linear", "plain_mlp", *(s.name for s in SETUPS), "blend"]
ABLATION_NAMES = ["prior", *REFERENCES, *(s.name for s in ABLATION)]
# The logistic family in an ensemble is experiment=ensemble (MLP + linear, global nested weights).
LEVER_NAMES = ["prior", "plain_linear", "plain_mlp", "mlp", *(s.name for s in LEVERS), "ensemble"]


def _variants() -> tuple[str, ...]:
    from moa_lit.data.synthetic import VARIANTS

    return (*VARIANTS, *EXTRA_VARIANTS)


# ---------------------------------------------------------------- one run
@with_allowed_targets
def run_setup(setup: Setup, common: list[str], out: Path, small: bool) -> dict:
    """Train one setup into out; its OOF scores and wall time. Runs in a worker
    process when --jobs > 1 (so it imports what it needs itself)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from moa_lit.config import CONFIG_DIR
    from moa_lit.train import train

    overrides = [*setup.overrides, *(setup.small if small else []), *common, f"paths.output_dir={out}"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR):
        cfg = compose(config_name="train", overrides=overrides)
    t0 = time.perf_counter()
    train(cfg)
    scores = read_json(out / SCORES)
    # The new-drug OOF first: the rows that behave like compounds never profiled.
    return {
        "oof": scores.get("oof_logloss_new_drugs"),
        "oof_all": scores["oof_logloss"],
        "prior": (scores.get("prior_logloss_new_drugs"), scores["prior_logloss"]),
        "seconds": time.perf_counter() - t0,
    }


def _run_or_error(setup: Setup, common: list[str], out: Path, small: bool) -> dict | str:
    logging.basicConfig(level=logging.WARNING)
    try:
        return run_setup(setup, common, out, small)
    except MoAError as err:
        return str(err)


def run_reference(name: str, data_dir: Path, out: Path, small: bool, threads: int, device: str) -> dict:
    """One plain script of REFERENCES on the data folder; its predictions of the
    test rows written to out/submission.csv, as a run's are."""
    import torch

    from moa_lit.bench import plain_reference

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        kind, meta, _ = REFERENCES[name]
        predictions = plain_reference.predict(data_dir, kind, meta=meta, hidden=64 if small else 1024, device=device)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    out.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(out / SUBMISSION, index=False)
    return {"oof": None, "oof_all": None, "seconds": seconds}


def _reference_or_error(name: str, data_dir: Path, out: Path, small: bool, threads: int, device: str) -> dict | str:
    try:
        return run_reference(name, data_dir, out, small, threads, device)
    except (OSError, ValueError, RuntimeError) as err:
        return f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------- held-out test
def heldout_logloss(predictions: pd.DataFrame, labels: pd.DataFrame) -> float:
    """Mean log loss of a submission-shaped frame against the held-out labels,
    matched by sig_id and target name (all test rows, controls included)."""
    from moa_lit.scoring.metric import mean_logloss

    names = list(labels.columns[1:])
    missing = [n for n in names if n not in predictions.columns]
    if missing:
        raise MoAError(f"{SUBMISSION}: lacks target columns {missing[:3]}")
    pred = predictions.set_index(schema.ID).reindex(labels[schema.ID])
    if pred[names].isna().any().any():
        raise MoAError(f"{SUBMISSION}: does not cover every held-out test row")
    return mean_logloss(labels[names].to_numpy(), pred[names].to_numpy())


def prior_test_predictions(data_dir: Path, labels: pd.DataFrame) -> pd.DataFrame:
    """The per-target prior on the test rows: the treated training rows'
    prevalence (smoothed as the OOF prior is), controls 0."""
    from moa_lit.scoring.scores import smoothed_prevalence

    feats = pd.read_csv(data_dir / schema.TRAIN_FEATURES, usecols=[schema.CP_TYPE])
    targets = pd.read_csv(data_dir / schema.TRAIN_TARGETS_SCORED)
    names = list(labels.columns[1:])
    treated = (feats[schema.CP_TYPE] == schema.TREATED).to_numpy()
    rate = smoothed_prevalence(targets[names].to_numpy()[treated])
    test_control = (pd.read_csv(data_dir / schema.TEST_FEATURES, usecols=[schema.ID, schema.CP_TYPE])
                    .set_index(schema.ID).reindex(labels[schema.ID])[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    values = np.where(test_control[:, None], 0.0, rate[None, :])
    frame = pd.DataFrame(values, columns=names)
    frame.insert(0, schema.ID, labels[schema.ID].to_numpy())
    return frame


# ---------------------------------------------------------------- command line
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m moa_lit.bench.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--n-samples", type=int, default=23814, help="rows of the synthetic data (default: full size)")
    p.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs (and stage epochs); default: the configs'")
    p.add_argument("--folds", type=int, default=5, help="cv.n_folds")
    p.add_argument("--variants", default=None, help="comma-separated data variants (default: all)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {','.join(NAMES)}; "
                   "or 'ablation' / 'levers': issue 21's ablation or lever rows, with the references")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, each with num_threads = cores / jobs")
    p.add_argument("--cores", type=int, default=None, help="cores to share among the jobs (default: the cores this process may use)")
    p.add_argument("--small", action="store_true", help="narrow networks (for quick checks, not for the table)")
    p.add_argument("--out", default="outputs/bench/quality", help="folder of the runs: <out>/<variant>/<setup>")
    p.add_argument("--data-dir", default="data", help="where the synthetic data is generated and cached")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run, e.g. trainer=gpu")
    args = p.parse_args(argv)
    variants = _variants()
    if args.variants:
        args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = [v for v in args.variants if v not in variants]
        if unknown:
            p.error(f"--variants: unknown data variant(s) {unknown}; expected names from {list(variants)}")
    else:
        args.variants = list(variants)
    if args.only in ("ablation", "levers"):
        args.only = ABLATION_NAMES if args.only == "ablation" else LEVER_NAMES
    elif args.only:
        args.only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in args.only if n not in NAMES + ABLATION_NAMES + LEVER_NAMES]
        if unknown:
            p.error(f"--only: unknown setup(s) {unknown}; expected names from {NAMES + ABLATION_NAMES + LEVER_NAMES}")
    else:
        args.only = NAMES
    refuse_counts_below_one(p, args, "--n-samples", "--epochs", "--folds", "--jobs", "--cores")
    if args.cores is None:
        from moa_lit.cli import available_cores

        args.cores = available_cores()
    return args


def rank(values: dict[str, float]) -> dict[str, float]:
    """1 for the lowest value; ties share the mean of their ranks."""
    series = pd.Series(values, dtype=float)
    return series.rank(method="average").to_dict()


def format_variant(variant: str, rows: list[tuple[str, str, dict | str]]) -> str:
    lines = [
        f"data variant: {variant}",
        f"{'setup':<20} {'OOF new':>9} {'test all':>9} {'test-OOF':>9} {'rank':>5} {'wall s':>8}  description",
        "-" * 100,
    ]
    for name, description, result in rows:
        if isinstance(result, str):
            lines.append(f"{name:<20} {'failed':>9} {'':>9} {'':>9} {'':>5} {'':>8}  {result}")
            continue
        test, oof = result.get("test"), result.get("oof")
        shown_oof = f"{oof:>9.5f}" if oof is not None else f"{'-':>9}"
        shown_test = f"{test:>9.5f}" if test is not None else f"{'-':>9}"
        gap = f"{test - oof:>+9.5f}" if test is not None and oof is not None else f"{'-':>9}"
        shown_rank = f"{result['rank']:>5g}" if "rank" in result else f"{'-':>5}"
        lines.append(f"{name:<20} {shown_oof} {shown_test} {gap} {shown_rank} {result['seconds']:>8.0f}  {description}")
    return "\n".join(lines)


def format_summary(mean_ranks: dict[str, float], counts: dict[str, int], n_variants: int) -> str:
    lines = [f"mean rank on the held-out test across {n_variants} data variant(s) (1 = best)",
             f"{'setup':<20} {'mean rank':>9} {'variants':>9}", "-" * 40]
    for name, value in sorted(mean_ranks.items(), key=lambda kv: kv[1]):
        lines.append(f"{name:<20} {value:>9.2f} {counts[name]:>9d}")
    return "\n".join(lines)


def _prepare_data(common: list[str], extra: dict | None = None) -> tuple[Path, list[str]]:
    """The data folder the runs with these overrides will read: generated (or
    reused) here, its reader cache warmed once, before parallel runs would each
    try to. Composed from the same overrides, so a data.seed=... among the extra
    overrides is the data whose held-out labels score the runs. With extra
    generator settings (EXTRA_VARIANTS) the folder is generated with them and
    the runs' overrides read it as data=kaggle: the folder and those overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from moa_lit.config import CONFIG_DIR
    from moa_lit.data import sources
    from moa_lit.data.synthetic import SyntheticConfig, ensure_synthetic

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR):
        data = compose(config_name="train", overrides=common).data
    settings = OmegaConf.to_container(data, resolve=True)
    if settings.pop("_target_", None) != f"{sources.__name__}.load_synthetic":
        raise MoAError(NEEDS_SYNTHETIC)
    if not extra:
        sources.load_synthetic(**settings)
        settings.pop("dir"), settings.pop("use_cache", None)
        return ensure_synthetic(SyntheticConfig(**settings), Path(data.dir).expanduser()), common
    root, use_cache = Path(settings.pop("dir")).expanduser(), settings.pop("use_cache", True)
    folder = ensure_synthetic(SyntheticConfig(**{**settings, **extra}), root)
    sources.load_kaggle(dir=str(folder), n_genes=settings["n_genes"], n_cells=settings["n_cells"], use_cache=use_cache)
    kept = [o for o in common if o.lstrip("+").partition("=")[0].split(".")[0] != "data"]
    return folder, [*kept, "data=kaggle", f"data.dir={folder}", f"data.n_genes={settings['n_genes']}",
                    f"data.n_cells={settings['n_cells']}", f"data.use_cache={str(use_cache).lower()}"]


@with_allowed_targets
@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING)
    from moa_lit.blend import blend
    from moa_lit.cli import one_line
    from moa_lit.config import compose_checked
    from moa_lit.data.synthetic import heldout_test_labels

    out = Path(args.out).expanduser().resolve()
    threads = max(1, args.cores // args.jobs)
    blended_runs = [n for n in BLENDED if n in args.only] or BLENDED
    # A name in two lists (the default run, mlp) runs once.
    every = {s.name: s for s in SETUPS + ABLATION + LEVERS}
    setups = [s for s in every.values() if s.name in args.only or ("blend" in args.only and s.name in blended_runs)]
    descriptions = {s.name: s.description for s in every.values()}
    descriptions["prior"] = "per-target training prevalence, no features"
    descriptions.update({n: d for n, (*_, d) in REFERENCES.items()})
    descriptions["blend"] = "OOF-optimised blend of " + ", ".join(blended_runs) + " (wall s: runs + blend)"

    folders, labels, commons = {}, {}, {}
    for variant in args.variants:
        commons[variant] = [
            f"data.n_samples={args.n_samples}",
            f"data.dir={Path(args.data_dir).expanduser().resolve()}",
            f"data.variant={EXTRA_VARIANTS.get(variant, {}).get('variant', variant)}",
            f"cv.n_folds={args.folds}",
            f"num_threads={threads}",
            "callbacks.progress_bar.refresh_rate=0",
            # The benchmark prints every setup's score beside the prior, a poor one included.
            "allow_worse_than_prior=true",
            *args.overrides,
            *([f"trainer.max_epochs={args.epochs}", f"pretrain.max_epochs={args.epochs}",
               f"stack.max_epochs={args.epochs}"] if args.epochs is not None else []),
        ]
        # Bad settings (an extra override, data=kaggle) end the benchmark here
        # with one line, before any run starts.
        try:
            if any(o.partition("=")[0].lstrip("+") == "data" and o != "data=synthetic" for o in args.overrides):
                raise MoAError(NEEDS_SYNTHETIC)
            compose_checked(commons[variant])
            folders[variant], commons[variant] = _prepare_data(commons[variant], EXTRA_VARIANTS.get(variant))
            compose_checked(commons[variant])
            labels[variant] = heldout_test_labels(folders[variant])
        except MoAError as err:
            print(f"moa-lit: error: {one_line(str(err))}", file=sys.stderr, flush=True)
            return 2

    # Each job: (variant, row name, function, its arguments); the plain scripts
    # train where the runs do (trainer=gpu: the GPU).
    device = "cuda" if "trainer=gpu" in args.overrides else "cpu"
    jobs = [(v, n, _reference_or_error, (n, folders[v], out / v / n, args.small, threads, device))
            for v in args.variants for n in REFERENCES if n in args.only]
    jobs += [(v, s.name, _run_or_error, (s, commons[v], out / v / s.name, args.small))
             for v in args.variants for s in setups]
    results: dict[str, dict[str, dict | str]] = {v: {} for v in args.variants}
    print(f"running {len(jobs)} runs, {args.jobs} at a time with {threads} thread(s) each ...", flush=True)
    def finished(v: str, name: str, r: dict | str) -> None:
        # Each run's scores as it ends, so a benchmark cut short still shows them.
        results[v][name] = r
        if isinstance(r, dict):
            try:
                r["test"] = heldout_logloss(pd.read_csv(out / v / name / SUBMISSION), labels[v])
            except (OSError, MoAError) as err:
                r["test"], r["test_error"] = None, str(err)
            test = "-" if r["test"] is None else f"{r['test']:.5f}"
            oof = "-" if r["oof"] is None else f"{r['oof']:.5f}"
            print(f"done {v}/{name}: OOF {oof}, test {test}, {r['seconds']:.0f} s", flush=True)
        else:
            print(f"done {v}/{name}: failed: {one_line(r)}", flush=True)

    if args.jobs == 1:
        for v, name, fn, fn_args in jobs:
            print(f"running {v}/{name} ...", flush=True)
            finished(v, name, fn(*fn_args))
    else:
        # spawn: a forked child would inherit torch's thread pools and locks.
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(fn, *fn_args): (v, name) for v, name, fn, fn_args in jobs}
            for future in as_completed(futures):
                finished(*futures[future], future.result())

    tables, test_ranks = [], {}
    for v in args.variants:
        res = results[v]
        # The prior's OOF comes from a moa-lit run's scores; its test needs no run.
        first = next((r for r in res.values() if isinstance(r, dict) and "prior" in r), None)
        if "prior" in args.only:
            prior_test = heldout_logloss(prior_test_predictions(folders[v], labels[v]), labels[v])
            oof, oof_all = first["prior"] if first is not None else (None, None)
            res["prior"] = {"oof": oof, "oof_all": oof_all, "test": prior_test, "seconds": 0.0}
        if "blend" in args.only:
            done = [n for n in blended_runs if isinstance(res.get(n), dict)]
            t0 = time.perf_counter()
            try:
                blended = blend([out / v / n for n in done], out / v / "blend")["scores"]
                sub = out / v / "blend" / SUBMISSION
                res["blend"] = {
                    "oof": blended.get("oof_logloss_new_drugs"), "oof_all": blended["oof_logloss"],
                    "test": heldout_logloss(pd.read_csv(sub), labels[v]) if sub.is_file() else None,
                    "seconds": time.perf_counter() - t0 + sum(res[n]["seconds"] for n in done),
                }
            except MoAError as err:
                res["blend"] = str(err)
        shown = [n for n in dict.fromkeys(NAMES + ABLATION_NAMES + LEVER_NAMES) if n in args.only and n in res]
        scored = {n: res[n]["test"] for n in shown if isinstance(res[n], dict) and res[n].get("test") is not None}
        for n, r in rank(scored).items():
            res[n]["rank"] = r
            test_ranks.setdefault(n, []).append(r)
        tables.append(format_variant(v, [(n, descriptions[n], res[n]) for n in shown]))

    mean_ranks = {n: float(np.mean(r)) for n, r in test_ranks.items()}
    header = (
        f"Quality benchmark on the built-in synthetic data: {args.n_samples} rows, {args.folds} folds "
        f"(cv.seed 42), epochs {'as configured' if args.epochs is None else args.epochs}"
        f"{', small networks' if args.small else ''}; OOF new: over new-drug rows (treated rows of drugs kept whole "
        f"in their fold; plain_* scripts: none, trained on all rows), test over all held-out test rows (drugs absent from training); rank by test log loss"
    )
    summary = format_summary(mean_ranks, {n: len(r) for n, r in test_ranks.items()}, len(args.variants))
    print("\n" + header + "\n\n" + "\n\n".join(tables) + "\n\n" + summary, flush=True)
    write_json({"header": header, "results": results, "mean_test_rank": mean_ranks}, out / "quality.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
