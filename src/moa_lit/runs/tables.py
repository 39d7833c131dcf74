"""A run's CSV tables read back with sig_id and drug_id as text: pandas would
read ``0000600`` as 600, no longer the data's id."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moa_lit import schema

TEXT_COLUMNS = (schema.ID, schema.DRUG)
# pandas' default missing-value markers, kept for the numeric columns only: an
# id such as "NA" or "null" is an id.
_MISSING = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
            "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def read_run_csv(path: Path) -> pd.DataFrame:
    """A run's CSV table with its id columns as text and the rest as pandas reads it."""
    columns = pd.read_csv(path, nrows=0).columns
    text = {name: "str" for name in columns if name in TEXT_COLUMNS}
    return pd.read_csv(
        path,
        dtype=text,
        keep_default_na=False,
        na_values={name: _MISSING for name in columns if name not in text},
    )
