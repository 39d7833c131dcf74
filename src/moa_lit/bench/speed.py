"""Speed and memory of moa-lit on this machine, measured side by side in one
process so ratios are not at the mercy of a noisy shared machine.

Sections (``section=ratio,default_run``; all by default), each runnable alone
and printing its own block, so they can run at once pinned to their own cores
(``taskset -c 0,1 python -m moa_lit.bench section=ratio``):

- ``ratio``: training throughput of the project's Lightning path against a
  minimal plain-PyTorch loop over the same tensors, model, batches, optimizer,
  schedule and precision (and their ratio); effective training GFLOP/s beside
  the GFLOP/s of a plain matrix multiply of the model's largest layer.
- ``members``: a run's fold models (folds x seeds) trained by plain loops one
  after another against all at once as batched members (weights [M, in, out]
  through one ``baddbmm``, batch norm per member): issue 22's ceiling for
  training members together, measured before building it.
- ``data``: cold and cached parsing of the Kaggle-sized feature CSV.
- ``default_run``: the default ``python -m moa_lit.train`` against the
  previous default (its settings as overrides), one after the other: wall
  time split into phases, OOF scores, peak resident memory; inference rows/s
  of the new default's saved run.
- ``concurrent``: two runs at once (a joblib multirun of two folds) with the
  automatic threads (cores / jobs) against the previous default (every core
  for each run): training rows/s of each.
- ``features``: the ``best`` preset's feature phase, fitted once per fold,
  against one fit per seed and fold (before); its peak resident memory.
- ``rank_gauss``: one fold's rank-Gauss transform (its training and
  validation rows, g-* and c-*) by scikit-learn's QuantileTransformer and by
  moa-lit's ``RankGauss`` (the same fit, torch transform): seconds and the
  largest difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from moa_lit.bench import one_line_errors, refuse_counts_below_one
from moa_lit.targets import with_allowed_targets
from moa_lit.config import CONFIG_DIR


def compose(overrides: list[str]):
    """The run's config, ``trainer.precision`` resolved as a run resolves it (the plain loop reads it)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from moa_lit.devices import resolved_precision

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR):
        cfg = hydra_compose(config_name="train", overrides=overrides)
    GlobalHydra.instance().clear()
    cfg.trainer.precision = resolved_precision(cfg.trainer)
    return cfg


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}"


# ---------------------------------------------------------------- training ---
def _targets_and_folds(cfg, data) -> tuple[np.ndarray, np.ndarray]:
    """The scored targets and the run's drug-aware folds, as a run assigns them."""
    from moa_lit.training.folds import assign_folds

    targets = data.scored.to_numpy(dtype=np.float64)
    return targets, assign_folds(targets, data.drug, cfg.cv.n_folds, cfg.cv.seed, cfg.cv.drug_threshold)


def _fold_data(cfg, data, device: str):
    from omegaconf import OmegaConf

    from moa_lit.training.datamodule import MoADataModule

    targets, folds = _targets_and_folds(cfg, data)
    dm = MoADataModule(
        data.train, targets, folds, data.train_is_control, list(data.layout.genes), list(data.layout.cells),
        OmegaConf.to_container(cfg.features, resolve=True), cfg.loader.batch_size, cfg.loader.eval_batch_size, device,
    )
    return dm.set_fold(0, seed=0)


def _module(cfg, dm):
    from hydra.utils import instantiate

    torch.manual_seed(0)
    return instantiate(cfg.model, n_features=dm.n_features, n_targets=dm.tensors.y_train.shape[1], _recursive_=False)


def lightning_epochs(cfg, dm, epochs: int, workdir: Path) -> float:
    """The project's own path: MoAModule + the configured Trainer and callbacks."""
    from moa_lit.runs.run_dir import FoldDir, RunDir
    from moa_lit.train import fold_trainers

    module = _module(cfg, dm)
    cfg = cfg.copy()  # the caller's config keeps its own max_epochs
    cfg.trainer.max_epochs = epochs
    trainer, _ = fold_trainers(cfg)(RunDir(workdir), FoldDir(workdir / "fold", seed=0, fold=0))
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return time.perf_counter() - t0


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision setting (None: full precision)."""
    return {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(str(precision))


def plain_epochs(cfg, dm, epochs: int, compile_mode: str | None = None) -> float:
    """A minimal hand-written loop: same model, batches, optimizer, schedule,
    precision (autocast, and a gradient scaler for fp16 as Lightning uses), and
    the same per-epoch validation pass, its loss summed on the device and read
    once per epoch. ``compile_mode``: the network through torch.compile."""
    from hydra.utils import instantiate

    from moa_lit.training.datamodule import TensorBatches
    from moa_lit.training.module import new_optimizer

    module = _module(cfg, dm).to(dm.device)
    net = module.net
    step_net = torch.compile(net, mode=compile_mode) if compile_mode else net
    optimizer = new_optimizer(cfg.model.optimizer, net.parameters())
    batches = TensorBatches(dm.tensors.x_train, dm.tensors.y_train, dm.batch_size, shuffle=True, seed=0)
    scheduler = instantiate(cfg.model.scheduler, optimizer=optimizer, total_steps=epochs * len(batches))
    dtype = autocast_dtype(cfg.trainer.precision)
    scaler = torch.amp.GradScaler(dm.device.type, enabled=dtype == torch.float16)
    t0 = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for x, y in batches:
            with torch.autocast(dm.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.binary_cross_entropy_with_logits(step_net(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
        net.eval()
        with torch.no_grad():
            total = torch.zeros((), dtype=torch.float64, device=dm.device)
            for x, y in TensorBatches(dm.tensors.x_val, dm.tensors.y_val, dm.eval_batch_size, shuffle=False, drop_singleton=False):
                with torch.autocast(dm.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    logits = net(x)
                total += F.binary_cross_entropy_with_logits(logits.double(), y.double(), reduction="sum")
            float(total)
    if dm.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def linear_layer_shapes(net) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)]


def matmul_gflops(batch: int, n_in: int, n_out: int, device, dtype: torch.dtype | None = None, repeats: int = 50) -> float:
    """GFLOP/s of one [batch, n_in] x [n_in, n_out] matrix multiply in ``dtype``
    (the training's autocast dtype; float32 without one)."""
    a = torch.randn(batch, n_in, device=device, dtype=dtype or torch.float32)
    w = torch.randn(n_in, n_out, device=device, dtype=dtype or torch.float32)
    for _ in range(5):
        a @ w
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ w
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * batch * n_in * n_out * repeats / (time.perf_counter() - t0) / 1e9


def bench_training(cfg, data, epochs: int, rounds: int, device: str) -> dict:
    import logging
    from omegaconf import open_dict

    from moa_lit.quiet import quiet_lightning

    quiet_lightning()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    with open_dict(cfg):
        cfg.callbacks.progress_bar.refresh_rate = 0
    dm = _fold_data(cfg, data, device)
    n_rows = len(dm.tensors.x_train)
    plain, light = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):  # alternate, so drift on a shared machine hits both
            plain.append(plain_epochs(cfg, dm, epochs))
            light.append(lightning_epochs(cfg, dm, epochs, Path(tmp) / f"r{r}"))
    plain_rps = n_rows * epochs / min(plain)
    light_rps = n_rows * epochs / min(light)
    variants = {}
    if dm.device.type == "cuda":
        # Candidates for the launch-bound GPU loop, each timed after a warm-up
        # fit (compilation is not counted; a fold pays it once per process).
        for name, mode in (("torch.compile", "default"), ("torch.compile + CUDA graphs", "reduce-overhead")):
            try:
                plain_epochs(cfg, dm, 1, compile_mode=mode)
                variants[name] = n_rows * epochs / plain_epochs(cfg, dm, epochs, compile_mode=mode)
            except Exception as err:  # a candidate that fails is reported, not fatal
                variants[name] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:150] if str(err) else ''}"
    net = _module(cfg, dm).net
    shapes = linear_layer_shapes(net)
    # forward + backward of a linear layer is ~3x its forward's 2*m*n FLOPs per row
    flops_per_row = sum(6 * i * o for i, o in shapes)
    largest = max(shapes, key=lambda s: s[0] * s[1])
    mm = matmul_gflops(dm.batch_size, *largest, device=dm.device, dtype=autocast_dtype(cfg.trainer.precision))
    train_gflops = light_rps * flops_per_row / 1e9
    return {
        "train_rows": n_rows,
        "n_features": dm.n_features,
        "batch_size": dm.batch_size,
        "epochs": epochs,
        "plain_rows_per_s": plain_rps,
        "lightning_rows_per_s": light_rps,
        "ratio": light_rps / plain_rps,
        "train_gflops": train_gflops,
        "matmul_shape": [dm.batch_size, *largest],
        "matmul_gflops": mm,
        "precision": str(cfg.trainer.precision),
        "plain_variants": variants,
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated(dm.device) / 2**20 if dm.device.type == "cuda" else None,
    }


# ----------------------------------------------------------------- members ---
class _MemberLinear(torch.nn.Module):
    """M independent linear layers as one batched matmul: weight [M, out, in],
    weight-normed per member and output row as torch's weight_norm(dim=0)."""

    def __init__(self, members: int, n_in: int, n_out: int, weight_norm: bool) -> None:
        super().__init__()
        bound = n_in**-0.5  # nn.Linear's initialisation
        self.weight = torch.nn.Parameter(torch.empty(members, n_out, n_in).uniform_(-bound, bound))
        self.bias = torch.nn.Parameter(torch.empty(members, 1, n_out).uniform_(-bound, bound))
        self.g = torch.nn.Parameter(self.weight.detach().norm(dim=2, keepdim=True)) if weight_norm else None

    def forward(self, x):  # [M, B, in] -> [M, B, out]
        w = self.weight if self.g is None else self.weight * (self.g / self.weight.norm(dim=2, keepdim=True))
        return torch.baddbmm(self.bias, x, w.transpose(1, 2))


class _MemberBatchNorm(torch.nn.BatchNorm1d):
    """Batch norm per member: [M, B, F] seen as B rows of M * F features."""

    def __init__(self, members: int, n: int) -> None:
        super().__init__(members * n)
        self.members = members

    def forward(self, x):
        m, b, f = x.shape
        return super().forward(x.transpose(0, 1).reshape(b, m * f)).reshape(b, m, f).transpose(0, 1)


def member_mlp(net, members: int) -> torch.nn.Sequential:
    """``members`` copies of the configured MLP's layout (models/mlp.py), batched."""
    layers = []
    for module in [*net.body, *net.head]:
        if isinstance(module, torch.nn.BatchNorm1d):
            layers.append(_MemberBatchNorm(members, module.num_features))
        elif isinstance(module, torch.nn.Linear):
            layers.append(_MemberLinear(members, module.in_features, module.out_features, hasattr(module, "parametrizations")))
        else:  # dropout and activations act element-wise
            layers.append(module)
    return torch.nn.Sequential(*layers)


def members_epochs(cfg, dm, members: int, epochs: int, batched: bool) -> float:
    """Seconds for ``members`` fold models (the fold's rows, each its own order)
    trained ``epochs`` epochs by plain loops: one after another, or all at once
    through member_mlp. Same rows, batches, optimizer and schedule; no validation."""
    from hydra.utils import instantiate

    from moa_lit.training.module import new_optimizer

    x, y, bs = dm.tensors.x_train, dm.tensors.y_train, dm.batch_size
    steps = len(x) // bs
    orders = [[torch.randperm(len(x), generator=torch.Generator().manual_seed(e * members + m)) for m in range(members)]
              for e in range(epochs)]

    def fit(net, batch_of) -> None:
        optimizer = new_optimizer(cfg.model.optimizer, net.parameters())
        scheduler = instantiate(cfg.model.scheduler, optimizer=optimizer, total_steps=epochs * steps)
        net.train()
        for e in range(epochs):
            for b in range(steps):
                xb, yb = batch_of(e, b)
                loss = F.binary_cross_entropy_with_logits(net(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()

    t0 = time.perf_counter()
    if batched:
        net = member_mlp(_module(cfg, dm).net, members).to(dm.device)

        def batch_of(e, b):
            rows = torch.stack([o[b * bs : (b + 1) * bs] for o in orders[e]]).to(dm.device)
            return x[rows], y[rows]

        fit(net, batch_of)
    else:
        for m in range(members):
            fit(_module(cfg, dm).net.to(dm.device), lambda e, b: (x[orders[e][m][b * bs : (b + 1) * bs]], y[orders[e][m][b * bs : (b + 1) * bs]]))
    if dm.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_members(cfg, data, epochs: int, rounds: int, device: str) -> dict:
    """Issue 22's question before building: how much faster are a run's fold
    models trained at once, as batched members, than one after another?"""
    dm = _fold_data(cfg, data, device)
    members = int(cfg.cv.n_folds) * len(cfg.seeds)
    apart, together = [], []
    for _ in range(rounds):  # alternate, so drift on a shared machine hits both
        apart.append(members_epochs(cfg, dm, members, epochs, batched=False))
        together.append(members_epochs(cfg, dm, members, epochs, batched=True))
    rows = members * (len(dm.tensors.x_train) // dm.batch_size) * dm.batch_size * epochs
    return {"members": members, "epochs": epochs, "rows": rows, "apart_rows_per_s": rows / min(apart),
            "together_rows_per_s": rows / min(together), "speedup": min(apart) / min(together)}


# -------------------------------------------------------------------- data ---
def bench_data(folder: Path) -> dict:
    """Cold parse (no cache) and cached load of the Kaggle-sized train features."""
    from moa_lit.data.reader import read_dataset

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        read_dataset(folder, use_cache=False)
        cold_total = time.perf_counter() - t0
        read_dataset(folder, cache_dir=Path(cache))  # fills the cache
        t0 = time.perf_counter()
        read_dataset(folder, cache_dir=Path(cache))
        cached_total = time.perf_counter() - t0
    import pandas as pd

    t0 = time.perf_counter()
    pd.read_csv(folder / "train_features.csv", engine="pyarrow")
    parse_only = time.perf_counter() - t0
    size_mb = (folder / "train_features.csv").stat().st_size / 1e6
    hashing = {f"{name}_features_s": _hash_seconds(folder / "train_features.csv", name) for name in ("sha1", "blake2b")}
    return {
        "features_csv_mb": size_mb,
        "parse_features_s": parse_only,
        "cold_read_all_s": cold_total,
        "cached_read_all_s": cached_total,
        **hashing,  # the parse cache's key (sha1) against the alternative
    }


def _hash_seconds(path: Path, algorithm: str) -> float:
    import hashlib

    t0 = time.perf_counter()
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- full run ---
# The default before issue 15 (batch 128, 15 epochs, OneCycle peak 3e-3),
# as overrides of today's defaults: the bench runs both.
OLD_DEFAULT = [
    "loader.batch_size=128",
    "model.scheduler.max_lr=3e-3",
    "trainer.max_epochs=15",
]


def child_env() -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(args: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run ``python args``; (wall seconds, peak resident MB of that process, stderr).
    os.wait4 gives the child's own peak, not the largest of all children so far."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *args], env=env or child_env(), stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} failed (exit {proc.returncode}):\n{text[-2000:]}")
    return wall, usage.ru_maxrss / 1024, text


def bench_full_run(overrides: list[str], test_file: Path | None, run_dir: Path) -> dict:
    """One ``python -m moa_lit.train`` in ``run_dir``: times, scores, peak memory."""
    wall, peak_mb, _ = run_child(
        ["-m", "moa_lit.train", f"hydra.run.dir={run_dir}", "callbacks.progress_bar.refresh_rate=0", *overrides]
    )
    scores = json.loads((run_dir / "scores.json").read_text())
    result = {"wall_s": wall, "timings_s": scores["timings_s"], "peak_rss_mb": peak_mb,
              "peak_gpu_memory_mb": scores.get("peak_gpu_memory_mb"),
              "oof_logloss": scores["oof_logloss"], "oof_logloss_treated": scores["oof_logloss_treated"],
              "best_epochs": [f.get("best_epoch") for f in scores.get("fold_summaries", [])]}
    if test_file is not None:
        result["inference"] = bench_inference(run_dir, test_file)
    return result


def print_full_run(label: str, cfg, fr: dict) -> None:
    t = fr["timings_s"]
    training = t.get("training", 0.0)
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in t.items() if k != "total")
    print(f"{label}: {t['total']:.1f} s in-process ({fr['wall_s']:.1f} s with start-up): {parts}")
    gpu_peak = fr.get("peak_gpu_memory_mb")
    print(f"{label}: non-training share {(t['total'] - training) / t['total']:.1%}; peak resident memory {fr['peak_rss_mb']:,.0f} MB"
          + (f"; peak GPU memory of a fold {gpu_peak:,.0f} MB" if gpu_peak is not None else ""))
    print(f"{label}: OOF log loss (built-in synthetic data) {fr['oof_logloss']:.5f} all rows, "
          f"{fr['oof_logloss_treated']:.5f} treated rows; best epochs {fr['best_epochs']}")


def bench_inference(run_dir: Path, test_file: Path) -> dict:
    """Rows/s of predicting the synthetic test file with the saved run (all folds)."""
    from moa_lit import load_run
    from moa_lit.data.reader import read_features

    t0 = time.perf_counter()
    model = load_run(run_dir)
    out = model.predict_proba(read_features(test_file, model.manifest.layout))
    seconds = time.perf_counter() - t0
    return {"rows": len(out), "seconds": seconds, "rows_per_s": len(out) / seconds}


# ------------------------------------------------------------- concurrent ---
def bench_concurrent(overrides: list[str], epochs: int, threads: int | None, sweep_dir: Path) -> dict:
    """Two folds as two jobs at once (hydra/launcher=joblib_folds, n_jobs=2):
    each job's training rows/s, with ``threads`` per job (None: automatic)."""
    args = ["-m", "moa_lit.train", "-m", "hydra/launcher=joblib_folds", "hydra.launcher.n_jobs=2", "cv.folds=[0],[1]",
            f"hydra.sweep.dir={sweep_dir}", "callbacks.progress_bar.refresh_rate=0", f"trainer.max_epochs={epochs}",
            *overrides]
    if threads is not None:
        args.append(f"num_threads={threads}")
    wall, _, _ = run_child(args)
    jobs = []
    for job in sorted(p for p in sweep_dir.iterdir() if (p / "scores.json").is_file()):
        scores = json.loads((job / "scores.json").read_text())
        fold = scores["fold_summaries"][0]
        info = json.loads(next(job.glob(f"models/seed*/fold{fold['fold']}/fold.json")).read_text())
        jobs.append(info["n_train_rows"] * epochs / scores["timings_s"]["training"])
    if len(jobs) != 2:
        raise RuntimeError(f"expected 2 finished jobs under {sweep_dir}, found {len(jobs)}")
    return {"wall_s": wall, "rows_per_s": jobs}


# --------------------------------------------------------------- features ---
def bench_features_per_seed(cfg, data, seeds: list[int]) -> float:
    """Seconds of fitting and applying the feature pipeline once per seed and
    fold, as runs did before features were shared across seeds."""
    from omegaconf import OmegaConf

    from moa_lit.training.datamodule import MoADataModule

    targets, folds = _targets_and_folds(cfg, data)
    params = OmegaConf.to_container(cfg.features, resolve=True)
    t0 = time.perf_counter()
    for fold in range(cfg.cv.n_folds):
        for seed in seeds:
            dm = MoADataModule(data.train, targets, folds, data.train_is_control, list(data.layout.genes),
                               list(data.layout.cells), params, cfg.loader.batch_size, cfg.loader.eval_batch_size)
            dm.set_fold(fold, seed=seed)
    return time.perf_counter() - t0


def bench_rank_gauss(cfg, data, rounds: int) -> dict:
    """Best-of-``rounds`` seconds of fold 0's rank-Gauss transform, scikit-learn's and RankGauss."""
    from sklearn.preprocessing import QuantileTransformer

    from moa_lit.training.datamodule import FEATURE_SEED
    from moa_lit.training.features import RankGauss

    folds = _targets_and_folds(cfg, data)[1]
    treated = ~data.train_is_control
    out = {"seconds": {}, "max_diff": 0.0}
    for block in (list(data.layout.genes), list(data.layout.cells)):
        x = data.train[block].to_numpy()
        train, val = x[(folds != 0) & treated], x[folds == 0]
        ours = RankGauss(cfg.features.n_quantiles, random_state=FEATURE_SEED).fit(train)
        theirs = QuantileTransformer(n_quantiles=cfg.features.n_quantiles, output_distribution="normal", random_state=FEATURE_SEED).fit(train)
        for name, transformer in (("scikit-learn", theirs), ("RankGauss", ours)):
            seconds = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                results = [transformer.transform(rows) for rows in (train, val)]
                seconds.append(time.perf_counter() - t0)
            out["seconds"][name] = out["seconds"].get(name, 0.0) + min(seconds)
            out.setdefault(name, results)
        out["max_diff"] = max(out["max_diff"], *(float(np.abs(a - b).max()) for a, b in zip(out.pop("scikit-learn"), out.pop("RankGauss"))))
    out["rows"] = (int(((folds != 0) & treated).sum()), int((folds == 0).sum()))
    return out


SECTIONS = ("ratio", "members", "data", "default_run", "concurrent", "features", "rank_gauss")


def split_sections(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``section=a,b`` among the positional arguments -> (sections, Hydra overrides)."""
    chosen, rest = [], []
    for item in overrides:
        if item.startswith("section="):
            chosen += [name.strip() for name in item.split("=", 1)[1].split(",") if name.strip()]
        else:
            rest.append(item)
    unknown = [name for name in chosen if name not in SECTIONS and name != "all"]
    if unknown:
        raise SystemExit(f"moa-lit: error: section={','.join(unknown)}: expected some of {','.join(SECTIONS)} (or all)")
    if not chosen or "all" in chosen:
        chosen = list(SECTIONS)
    return [name for name in SECTIONS if name in chosen], rest


@with_allowed_targets
@one_line_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m moa_lit.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6, help="ratio: epochs per throughput measurement (more amortise the per-fit set-up)")
    parser.add_argument("--rounds", type=int, default=3, help="ratio: alternating plain/Lightning rounds (best of)")
    parser.add_argument("--members-epochs", type=int, default=2, help="members: epochs of each fold model")
    parser.add_argument("--n-samples", type=int, default=23814, help="synthetic training rows")
    parser.add_argument("--concurrent-epochs", type=int, default=2, help="concurrent: epochs of each of the two runs")
    parser.add_argument("--features-epochs", type=int, default=1,
                        help="features: epochs of the best preset's run (its feature phase and memory do not depend on them)")
    parser.add_argument("--skip-full-run", action="store_true", help="leave out default_run, concurrent and features")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("overrides", nargs="*",
                        help=f"section={','.join(SECTIONS)} (default all), then Hydra overrides for every run, e.g. trainer.max_epochs=5")
    args = parser.parse_intermixed_args(argv)  # section=... and overrides may sit between options
    refuse_counts_below_one(parser, args, "--epochs", "--rounds", "--members-epochs", "--n-samples", "--concurrent-epochs", "--features-epochs")
    sections, user_overrides = split_sections(args.overrides)
    if args.skip_full_run:
        sections = [name for name in sections if name in ("ratio", "members", "data", "rank_gauss")]

    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    overrides = [f"data.n_samples={args.n_samples}", *user_overrides]
    if device == "cuda" and not any(o.startswith("trainer=") for o in overrides):
        overrides.append("trainer=gpu")
    cfg = compose(overrides)
    from hydra.utils import instantiate

    from moa_lit.data.synthetic import SyntheticConfig, ensure_synthetic

    print(f"machine: {machine()}")
    print(f"device: {device if device == 'cuda' else 'cpu (no GPU)' if not torch.cuda.is_available() else 'cpu'}")
    print(f"sections: {', '.join(sections)}")
    sizes = {k: int(cfg.data[k]) for k in ("n_samples", "seed", "n_genes", "n_cells", "n_scored", "n_nonscored")}
    folder = ensure_synthetic(SyntheticConfig(**sizes, variant=cfg.data.get("variant", SyntheticConfig.variant)), Path(cfg.data.dir))  # the files the runs read
    data = instantiate(cfg.data) if {"ratio", "members", "features", "rank_gauss"} & set(sections) else None

    if "ratio" in sections:
        tr = bench_training(cfg, data, args.epochs, args.rounds, device)
        print(f"[ratio] training: {tr['train_rows']} rows x {tr['n_features']} features, batch {tr['batch_size']}, {tr['epochs']} epochs, "
              f"best of {args.rounds}, precision {tr['precision']}, {torch.get_num_threads()} threads")
        print(f"[ratio] plain PyTorch loop: {tr['plain_rows_per_s']:,.0f} rows/s")
        print(f"[ratio] Lightning path:     {tr['lightning_rows_per_s']:,.0f} rows/s")
        print(f"[ratio] lightning/plain throughput ratio: {tr['ratio']:.3f}")
        for name, value in tr["plain_variants"].items():
            print(f"[ratio] plain loop with {name}: " + (f"{value:,.0f} rows/s ({value / tr['plain_rows_per_s']:.2f}x eager)" if isinstance(value, float) else value))
        if tr["peak_gpu_memory_mb"] is not None:
            print(f"[ratio] peak GPU memory while measuring: {tr['peak_gpu_memory_mb']:,.0f} MB")
        print(f"[ratio] training compute: {tr['train_gflops']:.1f} GFLOP/s effective; matmul {tr['matmul_shape']} at that precision: {tr['matmul_gflops']:.1f} GFLOP/s ({tr['train_gflops'] / tr['matmul_gflops']:.0%})")

    if "members" in sections:
        mb = bench_members(cfg, data, args.members_epochs, args.rounds, device)
        print(f"[members] {mb['members']} fold models x {mb['epochs']} epochs by plain loops, best of {args.rounds}, "
              f"{torch.get_num_threads()} threads: one after another {mb['apart_rows_per_s']:,.0f} rows/s, "
              f"batched as members {mb['together_rows_per_s']:,.0f} rows/s: {mb['speedup']:.2f}x")

    if "rank_gauss" in sections:
        rg = bench_rank_gauss(cfg, data, args.rounds)
        sk, ours = rg["seconds"]["scikit-learn"], rg["seconds"]["RankGauss"]
        print(f"[rank_gauss] fold 0: {rg['rows'][0]:,} training + {rg['rows'][1]:,} validation rows x "
              f"{len(data.layout.genes)} g-* + {len(data.layout.cells)} c-*, best of {args.rounds}, {torch.get_num_threads()} threads")
        print(f"[rank_gauss] scikit-learn QuantileTransformer {sk:.2f} s, RankGauss {ours:.2f} s: {sk / ours:.1f}x; "
              f"largest difference {rg['max_diff']:.1e}")

    if "data" in sections:
        dr = bench_data(folder)
        print(f"[data] train_features.csv {dr['features_csv_mb']:.0f} MB parsed in {dr['parse_features_s']:.2f} s; "
              f"read + validate all files cold {dr['cold_read_all_s']:.2f} s, from cache {dr['cached_read_all_s']:.2f} s; "
              f"content hash of the file (the cache key) sha1 {dr['sha1_features_s']:.2f} s, blake2b {dr['blake2b_features_s']:.2f} s")

    if "default_run" in sections:
        # A key the command line sets (e.g. trainer.max_epochs=3 for a quick look) applies to both runs.
        given = {o.split("=", 1)[0].lstrip("+~") for o in user_overrides}
        old_default = [o for o in OLD_DEFAULT if o.split("=", 1)[0] not in given]
        with tempfile.TemporaryDirectory() as tmp:
            old = bench_full_run([*overrides, *old_default], None, Path(tmp) / "old")
            new = bench_full_run(overrides, folder / "test_features.csv", Path(tmp) / "new")
        print(f"[default_run] previous default = today's default + {' '.join(old_default) or '(nothing: the command line set those keys)'}")
        n_run = len(cfg.cv.folds) if cfg.cv.folds is not None else cfg.cv.n_folds
        print_full_run(f"[default_run] previous default ({n_run} folds)", cfg, old)
        print_full_run(f"[default_run] default ({n_run} folds, {cfg.trainer.max_epochs} epochs, batch {cfg.loader.batch_size})", cfg, new)
        change = new["oof_logloss"] / old["oof_logloss"] - 1
        print(f"[default_run] default / previous: wall time {new['wall_s'] / old['wall_s']:.2f}x "
              f"({new['timings_s']['total']:.1f} s vs {old['timings_s']['total']:.1f} s in-process), "
              f"OOF log loss {change:+.2%} relative ({new['oof_logloss']:.5f} vs {old['oof_logloss']:.5f})")
        inf = new["inference"]
        print(f"[default_run] inference: {inf['rows']} rows read, checked and predicted by all {n_run} folds' saved models "
              f"in {inf['seconds']:.2f} s = {inf['rows_per_s']:,.0f} rows/s")

    if "concurrent" in sections:
        from moa_lit.cli import available_cores

        cores = available_cores()
        with tempfile.TemporaryDirectory() as tmp:
            auto = bench_concurrent(overrides, args.concurrent_epochs, None, Path(tmp) / "auto")
            every = bench_concurrent(overrides, args.concurrent_epochs, cores, Path(tmp) / "all")
        print(f"[concurrent] two runs at once (hydra/launcher=joblib_folds n_jobs=2, one fold each, {args.concurrent_epochs} epochs) on {cores} cores:")
        for label, r, threads in (("automatic threads", auto, max(1, cores // 2)), ("every core each (previous default)", every, cores)):
            print(f"[concurrent] {label}, {threads} thread(s) per run: {' and '.join(f'{x:,.0f}' for x in r['rows_per_s'])} "
                  f"training rows/s ({sum(r['rows_per_s']):,.0f} together), {r['wall_s']:.1f} s for both")
        print(f"[concurrent] automatic / previous throughput: {sum(auto['rows_per_s']) / sum(every['rows_per_s']):.2f}x")

    if "features" in sections:
        # A feature-heavy run: components appended and 3 seeds (the best preset before issue 21).
        heavy = ["experiment=baseline", "seeds=[0,1,2]", "features.pca_genes=50", "features.pca_cells=15",
                 "features.factor_analysis_genes=20", "features.factor_analysis_cells=5"]
        best = compose([*heavy, *overrides])
        seeds = [int(x) for x in best.seeds]
        before = bench_features_per_seed(best, data, seeds)
        with tempfile.TemporaryDirectory() as tmp:
            fr = bench_full_run([*heavy, *overrides, f"trainer.max_epochs={args.features_epochs}"], None, Path(tmp) / "heavy")
        after = fr["timings_s"]["features"]
        print(f"[features] PCA + factor-analysis run ({len(seeds)} seeds x {best.cv.n_folds} folds): feature phase {after:.1f} s fitted once per fold "
              f"(in its run), {before:.1f} s fitted once per seed and fold (before; measured in this process): {before / after:.1f}x")
        print(f"[features] that run ({args.features_epochs} epoch(s); memory does not grow with epochs): "
              f"peak resident memory {fr['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
