"""The facts of the lish-moa layout, defined once: file names, column groups and
the allowed values of the metadata columns (see docs/data.md)."""

from __future__ import annotations

from dataclasses import dataclass

# Kaggle file names; the synthetic generator writes the same ones.
TRAIN_FEATURES = "train_features.csv"
TRAIN_TARGETS_SCORED = "train_targets_scored.csv"
TRAIN_TARGETS_NONSCORED = "train_targets_nonscored.csv"
TRAIN_DRUG = "train_drug.csv"
TEST_FEATURES = "test_features.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"

ID = "sig_id"
DRUG = "drug_id"
CP_TYPE = "cp_type"
CP_TIME = "cp_time"
CP_DOSE = "cp_dose"
META_COLUMNS = (ID, CP_TYPE, CP_TIME, CP_DOSE)

TREATED = "trt_cp"
CONTROL = "ctl_vehicle"
CP_TYPES = (TREATED, CONTROL)
CP_TIMES = (24, 48, 72)
CP_DOSES = ("D1", "D2")

GENE_PREFIX = "g-"
CELL_PREFIX = "c-"
N_GENES = 772
N_CELLS = 100
N_SCORED = 206
N_NONSCORED = 402


def gene_columns(n: int = N_GENES) -> list[str]:
    return [f"{GENE_PREFIX}{i}" for i in range(n)]


def cell_columns(n: int = N_CELLS) -> list[str]:
    return [f"{CELL_PREFIX}{i}" for i in range(n)]


@dataclass(frozen=True)
class FeatureLayout:
    """Which g-*/c-* columns a dataset has, in file order."""

    genes: tuple[str, ...]
    cells: tuple[str, ...]

    @property
    def numeric(self) -> list[str]:
        return [*self.genes, *self.cells]

    @property
    def columns(self) -> list[str]:
        return [*META_COLUMNS, *self.genes, *self.cells]

    @classmethod
    def kaggle(cls, n_genes: int = N_GENES, n_cells: int = N_CELLS) -> "FeatureLayout":
        return cls(tuple(gene_columns(n_genes)), tuple(cell_columns(n_cells)))


