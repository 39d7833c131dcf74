"""Feature preprocessing as one scikit-learn pipeline (docs/modelling.md),
fitted on a fold's training rows only and saved with that fold, so no
statistic of validation or test rows leaks into training. The variance
threshold applies within the g-* and c-* blocks only: one-hot columns
(variance <= 0.25) and row statistics would otherwise fall under the
thresholds public solutions used (e.g. 0.8 after rank-Gauss).

With ``control_centring`` the pipeline starts with :class:`ControlCentring`,
fitted on the fold's training controls (the other steps stay fitted on its
treated training rows: :func:`fit_transform_features`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.feature_selection import VarianceThreshold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, QuantileTransformer
from sklearn.utils.validation import validate_data

from moa_lit import schema
from moa_lit.errors import MoAError


def row_statistics(x: np.ndarray | pd.DataFrame) -> np.ndarray:
    """Mean, std, skew and kurtosis of each row (computed on the raw values)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.column_stack(
        [x.mean(axis=1), x.std(axis=1), stats.skew(x, axis=1), stats.kurtosis(x, axis=1)]
    )
    # A constant row (e.g. every c-* at the -10 viability floor) has no skew or
    # kurtosis: scipy gives NaN, which would poison the network; use 0.
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _to_float32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


# QuantileTransformer's: values within it of the fitted extremes map to them,
# and its normal output is clipped where these bounds map.
_BOUNDS = 1e-7
_CLIP = (float(stats.norm.ppf(_BOUNDS - np.spacing(1))), float(stats.norm.ppf(1 - (_BOUNDS - np.spacing(1)))))


class RankGauss(QuantileTransformer):
    """``QuantileTransformer(output_distribution="normal")``, fitted by
    scikit-learn, with a ``transform`` in torch that gives the same float32
    output (tests/test_features.py): scikit-learn's interpolates column by
    column in one thread, about 2 s of every fold's 17,500 training rows on
    the CPU (issue 22). Here all columns at once, on ``device`` (the CPU where
    that one is not here: a GPU run's preprocessor predicts on a laptop)."""

    def __init__(self, n_quantiles: int = 100, subsample: int = 10_000, random_state=None, device: str = "cpu"):
        super().__init__(
            n_quantiles=n_quantiles, output_distribution="normal", subsample=subsample, random_state=random_state
        )
        self.device = device

    @torch.inference_mode()
    def transform(self, X):
        if self.n_quantiles_ < 2:  # one knot, no segment (the settings ask for 2 or more)
            return super().transform(X)
        x = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            device = torch.device("cpu")
        # Columns as rows: searches and gathers run along contiguous memory.
        xt = torch.from_numpy(np.require(x.T, requirements=["C", "W"])).to(device)
        knots = torch.from_numpy(np.ascontiguousarray(self.quantiles_.T)).to(device)
        refs = torch.from_numpy(self.references_).to(device)
        out = torch.empty_like(xt)
        for cols in range(0, len(xt), 32):  # 32 columns at a time: temporaries stay in cache
            out[cols : cols + 32] = self._normal_scores(xt[cols : cols + 32], knots[cols : cols + 32], refs)
        return out.T.cpu().numpy()

    @staticmethod
    def _normal_scores(x32: torch.Tensor, knots: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        """scikit-learn's arithmetic, step by step: the mean of np.interp up and
        down the knots (a value on tied knots maps to the middle of their
        references), stored in the input's dtype; values within _BOUNDS of
        the end knots to 0 and 1; the normal quantile in float64, clipped."""
        last = knots.shape[1] - 1
        x = x32.double()
        slope = (refs[1:] - refs[:-1]) / (knots[:, 1:] - knots[:, :-1])
        above = torch.searchsorted(knots, x, right=True)  # knots <= x
        below = above.clone()  # knots < x: differs only where x is a knot
        on_knot = (above > 0) & (knots.gather(1, (above - 1).clamp(min=0)) == x)
        below[on_knot] = torch.searchsorted(knots[on_knot.nonzero()[:, 0]], x[on_knot][:, None]).squeeze(1)
        j = (above - 1).clamp(0, last - 1)
        up = refs[j] + slope.gather(1, j) * (x - knots.gather(1, j))
        up = torch.where(above > last, refs[-1], torch.where(above == 0, refs[0], up))
        m = below.clamp(1, last)
        down = refs[m] - slope.gather(1, m - 1) * (knots.gather(1, m) - x)
        down = torch.where(below == 0, refs[0], torch.where(below > last, refs[-1], down))
        mid = (0.5 * (up + down)).to(x32.dtype)
        mid = torch.where(x32 + _BOUNDS > knots[:, -1:], 1.0, mid)
        mid = torch.where(x32 - _BOUNDS < knots[:, :1], 0.0, mid)
        return torch.special.ndtri(mid.double()).clamp(*_CLIP)


class ProjectedPCA(PCA):
    """PCA whose ``fit_transform`` is ``fit().transform()``: training rows get
    exactly the projection that validation and test rows get. sklearn's own
    returns U * S of the (randomized) SVD, which differs from the projection
    (measured: up to 0.4 on components of scale ~48)."""

    def fit_transform(self, X, y=None):
        return self.fit(X, y).transform(X)


def cell_codes(frame: pd.DataFrame) -> np.ndarray:
    """Each row's (cp_time, cp_dose) cell as one code: time index x doses + dose index."""
    time = pd.Categorical(frame[schema.CP_TIME], categories=schema.CP_TIMES).codes
    dose = pd.Categorical(frame[schema.CP_DOSE], categories=schema.CP_DOSES).codes
    return time.astype(np.int64) * len(schema.CP_DOSES) + dose


def meta_cells(x, width: int):
    """The cell codes of :func:`cell_codes`, read back from transformed features
    (numpy or torch): the one-hot cp_time, cp_dose block is the last of the
    pipeline's ``width`` output columns (``build_feature_pipeline``)."""
    n_times, n_doses = len(schema.CP_TIMES), len(schema.CP_DOSES)
    meta = x[:, width - n_times - n_doses : width]
    return meta[:, :n_times].argmax(1) * n_doses + meta[:, n_times:].argmax(1)


class ControlCentring(TransformerMixin, BaseEstimator):
    """Subtracts from each row's ``columns`` the mean of the control rows
    (cp_type ctl_vehicle) of X given to ``fit`` with the row's cp_time and
    cp_dose; a cell without controls gets the mean of all of them. Returns the
    centred columns and cp_time, cp_dose (what the later steps read)."""

    def __init__(self, columns: Sequence[str] = ()):
        self.columns = columns

    def fit(self, X: pd.DataFrame, y=None) -> "ControlCentring":
        controls = X[X[schema.CP_TYPE] == schema.CONTROL]
        values, cells = controls[list(self.columns)].to_numpy(np.float64), cell_codes(controls)
        overall = values.mean(axis=0)  # MoADataModule refuses a fold without training controls
        self.means_ = np.stack([
            values[cells == c].mean(axis=0) if (cells == c).any() else overall
            for c in range(len(schema.CP_TIMES) * len(schema.CP_DOSES))
        ])
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        columns = list(self.columns)
        centred = X[columns].to_numpy(np.float64) - self.means_[cell_codes(X)]
        return pd.concat([X[[schema.CP_TIME, schema.CP_DOSE]], pd.DataFrame(centred, columns=columns, index=X.index)], axis=1)


def _block(
    rank_gauss: bool,
    n_quantiles: int,
    pca: int,
    factor_analysis: int,
    seed: int,
    variance_threshold: float | None,
    device: str,
) -> Pipeline:
    """g-* or c-* block: optional rank-Gauss, then the values plus appended components."""
    expand = [("values", "passthrough")]
    if pca:
        expand.append(("pca", ProjectedPCA(n_components=pca, random_state=seed)))
    if factor_analysis:
        expand.append(("fa", FactorAnalysis(n_components=factor_analysis, random_state=seed)))
    steps = []
    if rank_gauss:
        steps.append(
            ("rank_gauss", RankGauss(n_quantiles=n_quantiles, random_state=seed, device=device))
        )
    steps.append(("expand", FeatureUnion(expand)))
    if variance_threshold is not None:
        # Column-wise, so applying it per block equals applying it to their union.
        steps.append(("variance", VarianceThreshold(threshold=variance_threshold)))
    return Pipeline(steps)


def build_feature_pipeline(
    genes: Sequence[str],
    cells: Sequence[str],
    rank_gauss: bool = True,
    n_quantiles: int = 100,
    pca_genes: int = 0,
    pca_cells: int = 0,
    factor_analysis_genes: int = 0,
    factor_analysis_cells: int = 0,
    row_stats: bool = False,
    variance_threshold: float | None = None,
    control_centring: bool = False,
    seed: int = 0,
    device: str = "cpu",
) -> Pipeline:
    """The unfitted preprocessing pipeline: DataFrame of features -> float32 matrix
    (the component counts are checked against the data by ``FeatureSettings.check_against_data``)."""
    blocks = [
        ("genes", _block(rank_gauss, n_quantiles, pca_genes, factor_analysis_genes, seed, variance_threshold, device), list(genes)),
        ("cells", _block(rank_gauss, n_quantiles, pca_cells, factor_analysis_cells, seed, variance_threshold, device), list(cells)),
    ]
    if row_stats:
        blocks += [
            ("gene_stats", FunctionTransformer(row_statistics), list(genes)),
            ("cell_stats", FunctionTransformer(row_statistics), list(cells)),
        ]
    blocks.append(  # last: meta_cells reads it there
        (
            "meta",
            OneHotEncoder(
                categories=[list(schema.CP_TIMES), list(schema.CP_DOSES)],
                sparse_output=False,
                handle_unknown="error",
            ),
            [schema.CP_TIME, schema.CP_DOSE],
        )
    )
    columns = ColumnTransformer(blocks, remainder="drop", sparse_threshold=0.0)
    steps = [("columns", columns), ("float32", FunctionTransformer(_to_float32))]
    if control_centring:
        steps.insert(0, (CENTRING, ControlCentring([*genes, *cells])))
    return Pipeline(steps)


CENTRING = "control_centring"  # the pipeline's first step, when it has one


def fit_transform_features(pipeline: Pipeline, train_rows: pd.DataFrame, controls: pd.DataFrame | None = None) -> np.ndarray:
    """Fit on training rows and return their features: fitting transforms them
    anyway, and a second transform of the same rows (the rank-Gauss
    interpolation, column by column) was about a third of a fold's feature time.
    ``controls``: the training control rows, which fit the control centring
    (when the pipeline has it); every other step is fitted on ``train_rows``."""
    if CENTRING in pipeline.named_steps:
        centring = pipeline.named_steps[CENTRING].fit(controls)
        # The later steps, the same objects: fitting them fits the pipeline.
        train_rows, pipeline = centring.transform(train_rows), pipeline[1:]
    try:
        return pipeline.fit_transform(train_rows)
    except ValueError as err:
        if "variance threshold" in str(err).lower():
            raise MoAError(
                f"features.variance_threshold={pipeline.get_params()['columns__genes__variance__threshold']} "
                "leaves zero g-* or c-* columns; expected a lower threshold"
            ) from None
        raise
