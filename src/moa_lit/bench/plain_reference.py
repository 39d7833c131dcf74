"""The two plain scripts of issue 21, the reference rows of the quality benchmark.

Written as a user would write them, in plain PyTorch, pandas and scikit-learn,
reading the Kaggle-layout CSV files directly; nothing here goes through moa-lit:

* features: rank-Gauss (``QuantileTransformer``, 100 quantiles, normal output)
  of the g-/c- columns, fitted on the training rows it trains on, plus one-hot
  cp_time and cp_dose;
* ``linear``: batch norm, dropout 0.2, one linear layer;
* ``mlp``: the same with 2 hidden layers of 1,024 (weight norm, ReLU, batch
  norm and dropout 0.5 before each);
* trained on all treated training rows (controls dropped and predicted 0), no
  validation: Adam lr 1e-3, weight decay 1e-5, 20 epochs, batch 128, OneCycle
  max_lr 1e-2, label smoothing 0.001, the last epoch's model; 3 seeds averaged.

``predict(data_dir, kind)`` returns the test rows' predictions in the
sample-submission shape (sig_id, then the scored targets).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import QuantileTransformer
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

KINDS = ("linear", "mlp")


def load(data_dir: Path, meta: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame, list[str]]:
    """Treated training rows (x, y), all test rows (x), test ids+cp_type, target names."""
    train = pd.read_csv(data_dir / "train_features.csv")
    targets = pd.read_csv(data_dir / "train_targets_scored.csv")
    test = pd.read_csv(data_dir / "test_features.csv")
    treated = (train["cp_type"] == "trt_cp").to_numpy()
    names = [c for c in targets.columns if c != "sig_id"]
    assert (targets["sig_id"] == train["sig_id"]).all()
    numeric = [c for c in train.columns if c.startswith(("g-", "c-"))]
    qt = QuantileTransformer(n_quantiles=100, output_distribution="normal", random_state=0)
    qt.fit(train.loc[treated, numeric])

    def features(frame: pd.DataFrame) -> np.ndarray:
        onehot = [(frame["cp_time"] == t) for t in (24, 48, 72)] + [(frame["cp_dose"] == d) for d in ("D1", "D2")]
        return np.hstack([qt.transform(frame[numeric]), *([np.stack(onehot, axis=1)] if meta else [])]).astype(np.float32)

    return (features(train[treated]), targets.loc[treated, names].to_numpy(np.float32),
            features(test), test[["sig_id", "cp_type"]], names)


def make_net(kind: str, n_in: int, n_out: int, hidden: int = 1024) -> nn.Module:
    if kind == "linear":
        return nn.Sequential(nn.BatchNorm1d(n_in), nn.Dropout(0.2), nn.Linear(n_in, n_out))
    return nn.Sequential(
        nn.BatchNorm1d(n_in), nn.Dropout(0.2), weight_norm(nn.Linear(n_in, hidden)), nn.ReLU(),
        nn.BatchNorm1d(hidden), nn.Dropout(0.5), weight_norm(nn.Linear(hidden, hidden)), nn.ReLU(),
        nn.BatchNorm1d(hidden), nn.Dropout(0.5), weight_norm(nn.Linear(hidden, n_out)),
    )


def fit_predict(kind: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int, *,
                epochs: int = 20, batch: int = 128, hidden: int = 1024, device: str = "cpu") -> np.ndarray:
    torch.manual_seed(seed)
    net = make_net(kind, x.shape[1], y.shape[1], hidden).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    steps = (len(x) + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, epochs=epochs, steps_per_epoch=steps)
    xt, yt = torch.tensor(x, device=device), torch.tensor(y, device=device)  # copies: pandas hands out read-only arrays
    yt = yt * (1 - 0.001) + 0.5 * 0.001  # label smoothing 0.001
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(x), device=device).split(batch):
            if len(idx) > 1:  # batch norm needs two rows
                opt.zero_grad()
                loss_fn(net(xt[idx]), yt[idx]).backward()
                opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        return torch.sigmoid(net(torch.tensor(x_test, device=device))).cpu().numpy()


def predict(data_dir: str | Path, kind: str, *, seeds=(0, 1, 2), hidden: int = 1024,
            device: str = "cpu", meta: bool = True) -> pd.DataFrame:
    """Test predictions of one script, sample-submission shaped; controls 0.
    ``meta=False`` leaves out the one-hot time and dose (issue 21's ablation)."""
    x, y, x_test, test, names = load(Path(data_dir), meta)
    pred = np.mean([fit_predict(kind, x, y, x_test, s, hidden=hidden, device=device) for s in seeds], axis=0)
    pred[(test["cp_type"] != "trt_cp").to_numpy()] = 0.0
    out = pd.DataFrame(pred, columns=names)
    out.insert(0, "sig_id", test["sig_id"].astype(str).to_numpy())
    return out
