"""``python -m moa_lit.bench.quality``: the quality ablation. Each variant is a
full cross-validated run (the same folds and seeds for all) on the built-in
synthetic data, at full size unless shrunk; prints a table of OOF log loss over
all rows and over treated rows, and wall time.

    python -m moa_lit.bench.quality                       # full size: hours on 2 CPU cores
    python -m moa_lit.bench.quality --only baseline,linear,blend --n-samples 2000 --epochs 3
    python -m moa_lit.bench.quality trainer=gpu           # extra Hydra overrides for every run

Rows: the prior (no features), the baseline MLP (``experiment=baseline``), the
baseline plus each feature step, plus pretraining, plus stacked features, plus
seeds, the ResNet, the 1D-CNN, the linear model, the ``best`` preset and the
blend of the model families. A variant that fails (e.g. pretraining on data
whose non-scored targets have no positive) is reported with its error and the
others go on.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from moa_lit.targets import with_allowed_targets
from moa_lit.blend import blend
from moa_lit.config import CONFIG_DIR
from moa_lit.errors import MoAError
from moa_lit.runs.files import CONFIG, SCORES, atomic_path, read_json, write_json
from moa_lit.train import train


@dataclass
class Variant:
    name: str
    overrides: list[str]
    # Narrower networks for --small (tests and quick checks).
    small: list[str] = field(default_factory=lambda: ["model.net.hidden_size=32"])
    description: str = ""


CNN_SMALL = ["model.net.channels=8", "model.net.length=8", "model.net.conv_channels=16"]

VARIANTS = [
    Variant("baseline", ["experiment=baseline"], description="MLP, rank-Gauss features"),
    Variant("+pca", ["experiment=baseline", "features.pca_genes=50", "features.pca_cells=15"], description="+ PCA of g-* (50) and c-* (15)"),
    Variant("+factor_analysis", ["experiment=baseline", "features.factor_analysis_genes=20", "features.factor_analysis_cells=5"], description="+ factor analysis of g-* (20) and c-* (5)"),
    Variant("+row_stats", ["experiment=baseline", "features.row_stats=true"], description="+ row mean/std/skew/kurtosis"),
    Variant("+variance_threshold", ["experiment=baseline", "features.variance_threshold=0.8"], description="+ variance threshold 0.8"),
    Variant("+pretrain", ["experiment=baseline", "pretrain.enabled=true"], description="+ non-scored pretraining, then transfer"),
    Variant("+stack", ["experiment=baseline", "stack.enabled=true"], description="+ stacked non-scored predictions as features"),
    Variant("+seeds", ["experiment=baseline", "seeds=[0,1,2]"], description="+ 3 seeds averaged"),
    Variant("+clip", ["experiment=baseline", "predict.clip=[0.0005,0.999]"], description="+ predictions clipped to [0.0005, 0.999]"),
    Variant("resnet", ["experiment=baseline", "model=resnet"], description="residual MLP"),
    # Half the original's channels: the full 256/512 net costs several MLP epochs per epoch on CPU.
    Variant(
        "cnn1d",
        ["experiment=baseline", "model=cnn1d", "model.net.channels=128", "model.net.conv_channels=256"],
        small=CNN_SMALL,
        description="1D-CNN over a learned feature ordering (128 x 16, 256 conv channels)",
    ),
    Variant("linear", ["experiment=baseline", "model=linear"], small=[], description="batch norm + one linear layer"),
    Variant("best", ["experiment=best"], description="the experiment=best preset"),
    # issue 14: the adaptive ensemble (nested OOF) and the baseline with models refitted on all rows.
    Variant("ensemble", ["experiment=ensemble"], small=["ensemble.models.mlp.net.hidden_size=32"],
            description="MLP + linear on the same folds, nested blend weights (experiment=ensemble)"),
    Variant("refit", ["experiment=baseline", "final_model=refit"],
            description="baseline MLP, submission from 3 seeds refitted on all rows (OOF as baseline)"),
]
BLENDED = ["baseline", "resnet", "cnn1d", "linear"]
NAMES = ["prior", *(v.name for v in VARIANTS), "blend"]


def run_variant(variant: Variant, common: list[str], out: Path, small: bool) -> dict:
    overrides = [*variant.overrides, *(variant.small if small else []), *common, f"paths.output_dir={out}"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR):
        cfg = compose(config_name="train", overrides=overrides)
    # Saved like Hydra's CLI does (merge and the report read it).
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / CONFIG) as tmp:
        OmegaConf.save(cfg, tmp)
    t0 = time.perf_counter()
    train(cfg)
    scores = read_json(out / SCORES)
    return {
        "all": scores["oof_logloss"],
        "treated": scores["oof_logloss_treated"],
        "prior": (scores["prior_logloss"], scores["prior_logloss_treated"]),
        "seconds": time.perf_counter() - t0,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m moa_lit.bench.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--n-samples", type=int, default=23814, help="rows of the synthetic data (default: full size)")
    p.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs (and stage epochs); default: the configs'")
    p.add_argument("--folds", type=int, default=5, help="cv.n_folds")
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {','.join(NAMES)}")
    p.add_argument("--small", action="store_true", help="narrow networks (for quick checks, not for the table)")
    p.add_argument("--out", default="outputs/bench/quality", help="folder of the variants' run directories")
    p.add_argument("--data-dir", default="data", help="where the synthetic data is generated and cached")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run, e.g. trainer=gpu")
    args = p.parse_args(argv)
    if args.only:
        args.only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in args.only if n not in NAMES]
        if unknown:
            p.error(f"--only: unknown variant(s) {unknown}; expected names from {NAMES}")
    else:
        args.only = NAMES
    return args


def format_table(rows: list[tuple[str, str, dict | str]]) -> str:
    lines = [
        f"{'variant':<20} {'OOF all rows':>12} {'OOF treated':>12} {'wall s':>8}  description",
        "-" * 90,
    ]
    for name, description, result in rows:
        if isinstance(result, str):
            lines.append(f"{name:<20} {'failed':>12} {'':>12} {'':>8}  {result}")
        else:
            lines.append(
                f"{name:<20} {result['all']:>12.5f} {result['treated']:>12.5f} {result['seconds']:>8.0f}  {description}"
            )
    return "\n".join(lines)


@with_allowed_targets
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out).expanduser().resolve()
    common = [
        f"data.n_samples={args.n_samples}",
        f"data.dir={Path(args.data_dir).expanduser().resolve()}",
        f"cv.n_folds={args.folds}",
        "callbacks.progress_bar.refresh_rate=0",
        # The ablation prints every variant's score beside the prior, a poor one included.
        "allow_worse_than_prior=true",
        *args.overrides,
    ]
    if args.epochs is not None:
        common += [f"trainer.max_epochs={args.epochs}", f"pretrain.max_epochs={args.epochs}", f"stack.max_epochs={args.epochs}"]

    # The blend mixes the model families chosen with --only, or all of them.
    blended_runs = [n for n in BLENDED if n in args.only] or BLENDED
    results: dict[str, dict | str] = {}
    prior = None
    for variant in VARIANTS:
        needed = variant.name in args.only or ("blend" in args.only and variant.name in blended_runs)
        if not needed:
            continue
        print(f"running {variant.name} ...", flush=True)
        try:
            results[variant.name] = run_variant(variant, common, out / variant.name, args.small)
            prior = prior or results[variant.name]["prior"]
        except MoAError as err:
            results[variant.name] = str(err)
    if "blend" in args.only:
        done = [n for n in blended_runs if isinstance(results.get(n), dict)]
        t0 = time.perf_counter()
        try:
            blended = blend([out / n for n in done], out / "blend")["scores"]
            results["blend"] = {
                "all": blended["oof_logloss"],
                "treated": blended["oof_logloss_treated"],
                "seconds": time.perf_counter() - t0 + sum(results[n]["seconds"] for n in done),
            }
        except MoAError as err:
            results["blend"] = str(err)

    descriptions = {v.name: v.description for v in VARIANTS}
    descriptions["prior"] = "per-target training prevalence of each fold, no features"
    descriptions["blend"] = "OOF-optimised blend of " + ", ".join(blended_runs) + " (wall s: runs + blend)"
    rows = []
    for name in NAMES:
        if name == "prior" and "prior" in args.only and prior is not None:
            rows.append((name, descriptions[name], {"all": prior[0], "treated": prior[1], "seconds": 0.0}))
        elif name in args.only and name in results:
            rows.append((name, descriptions[name], results[name]))
    header = (
        f"Quality ablation on the built-in synthetic data: {args.n_samples} rows, {args.folds} folds "
        f"(cv.seed 42), epochs {'as configured' if args.epochs is None else args.epochs}"
        f"{', small networks' if args.small else ''}"
    )
    table = format_table(rows)
    print(f"\n{header}\n{table}", flush=True)
    write_json({"header": header, "results": results}, out / "quality.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
