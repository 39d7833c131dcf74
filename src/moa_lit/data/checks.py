"""Checks of a parsed file's header and values.

Each check raises a one-line `MoAError` that names the file (`role`), the
column, the row and what was expected versus found. Rows are counted from 1
after the header, the way a reader counts them in a spreadsheet below the
title row; the row's sig_id is given too, as it is unambiguous even where a
file has blank lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from moa_lit.errors import MoAError

SHOW = 5  # how many names a message lists before "and N more"


def quoted(names: Sequence[object], limit: int = SHOW) -> str:
    """`'a', 'b', 'c' and 4 more`: a short list that keeps messages to one line."""
    shown = ", ".join(repr(str(name)) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def show_value(value: object) -> str:
    """A cell value as the user typed it: strings quoted, numbers bare."""
    if isinstance(value, (str, bytes)):
        return repr(value)
    return str(value)


def where(ids: pd.Series | None, row: int) -> str:
    """'row 57 (sig_id id_0a1b2c3d4)' for the 0-based position `row`."""
    text = f"row {row + 1}"
    if ids is not None:
        sig_id = ids.iloc[row]
        if isinstance(sig_id, str) and sig_id.strip():
            text += f" (sig_id {sig_id})"
    return text


# -- header -------------------------------------------------------------------------


def column_difference(names: Sequence[str], expected: Sequence[str]) -> tuple[list[str], list[str]]:
    """(expected names absent from `names`, names not expected), each in its own order."""
    present, wanted = set(names), set(expected)
    return [name for name in expected if name not in present], [name for name in names if name not in wanted]


def describe_difference(missing: Sequence[str], unexpected: Sequence[str]) -> str:
    """'missing 2 ('g-5', 'g-6'); unexpected 1 ('foo')'."""
    parts = [f"missing {len(missing)} ({quoted(missing)})"] if missing else []
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} ({quoted(unexpected)})")
    return "; ".join(parts)


def check_columns(role: str, names: list[str], expected: Sequence[str], hint: str = "") -> None:
    """The header holds exactly `expected`, in any order, each name once."""
    check_unique_names(role, names)
    missing, unexpected = column_difference(names, expected)
    if not missing and not unexpected:
        return
    hint = hint or header_hint(names)
    raise MoAError(
        f"{role}: header does not match the expected columns: {describe_difference(missing, unexpected)}"
        + (f"; {hint}" if hint else "")
    )


def check_unique_names(role: str, names: list[str]) -> None:
    counts = Counter(names)
    duplicated = [name for name in names if counts[name] > 1]
    if duplicated:
        name = duplicated[0]
        positions = [str(i + 1) for i, other in enumerate(names) if other == name]
        raise MoAError(
            f"{role}: duplicate column name {name!r} (columns {' and '.join(positions[:2])}); "
            "expected each column once"
        )


def check_named(role: str, names: list[str]) -> None:
    """Every column has a name (an unnamed first column is an index saved by pandas)."""
    if "" in names:
        position = names.index("")
        raise MoAError(
            f"{role}: column {position + 1} has no name (an index column saved by pandas, or a trailing comma?); "
            "expected every column to be named"
        )


def header_hint(names: list[str]) -> str:
    """A guess at the usual cause of a header that does not fit, or ''."""
    if len(names) == 1 and (";" in names[0] or "\t" in names[0]):
        separator = "';'" if ";" in names[0] else "a tab"
        return f"the file seems to use {separator} as separator; expected ','"
    if "" in names:
        return "an empty column name (a trailing comma, or an index column saved by pandas?)"
    return ""


def is_blank(column: pd.Series) -> np.ndarray:
    """Missing cells: NaN, or empty text (pyarrow keeps '' in text columns)."""
    blank = column.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(column.dtype):
        blank = blank | (column.astype("str").str.strip() == "").to_numpy()
    return blank


# -- sig_id ---------------------------------------------------------------------------


def check_ids(role: str, ids: pd.Series) -> None:
    """Every row has a sig_id and none appears twice."""
    blank = is_blank(ids)
    if blank.any():
        row = int(np.argmax(blank))
        raise MoAError(f"{role}: missing sig_id at {where(None, row)}; expected an id on every row")
    repeated = ids.duplicated().to_numpy()
    if repeated.any():
        second = int(np.argmax(repeated))
        sig_id = ids.iloc[second]
        first = int(np.argmax((ids == sig_id).to_numpy()))
        n = int(repeated.sum())
        more = f" ({n} repeated rows in all)" if n > 1 else ""
        raise MoAError(
            f"{role}: duplicate sig_id {sig_id} at rows {first + 1} and {second + 1}{more}; expected each sig_id once"
        )


def check_same_ids(role: str, ids: pd.Series, reference_role: str, reference_ids: pd.Series) -> None:
    """`ids` holds the same sig_ids as `reference_ids`, in whatever order."""
    here, reference = ids.to_numpy(dtype=object), reference_ids.to_numpy(dtype=object)
    if same_order(here, reference):
        return
    # Python sets, not Series.isin: isin against 24k pyarrow strings takes 0.1-0.3 s.
    here_set, reference_set = set(here), set(reference)
    absent = [sig_id for sig_id in reference if sig_id not in here_set]
    extra = [sig_id for sig_id in here if sig_id not in reference_set]
    if not absent and not extra:
        return
    parts = []
    if absent:
        parts.append(f"{len(absent)} sig_id(s) of {reference_role} are missing here (e.g. {absent[0]})")
    if extra:
        parts.append(f"{len(extra)} sig_id(s) here are not in {reference_role} (e.g. {extra[0]})")
    raise MoAError(f"{role}: rows do not match {reference_role}: {'; '.join(parts)}; expected the same sig_ids")


def same_order(left: np.ndarray, right: np.ndarray) -> bool:
    return len(left) == len(right) and bool((left == right).all())


def align_rows(frame: pd.DataFrame | pd.Series, ids: pd.Series, reference_ids: pd.Series):
    """`frame`'s rows in the order of `reference_ids` (same set, checked before)."""
    here, reference = ids.to_numpy(dtype=object), reference_ids.to_numpy(dtype=object)
    if same_order(here, reference):
        return frame.reset_index(drop=True)
    positions = pd.Index(here).get_indexer(reference)
    return frame.take(positions).reset_index(drop=True)


# -- values -----------------------------------------------------------------------------


def numeric_matrix(
    role: str, frame: pd.DataFrame, columns: list[str], expected: str, dtype: type = np.float64
) -> np.ndarray:
    """The columns as a float matrix; a cell that is not a number is an error.

    With float32, a value beyond its range (1e39) becomes inf and is then
    reported by `check_finite`, as it could not be used anyway.

    A numeric column costs nothing here; only a column the parser left as
    text (because some cell is not a number) is searched for that cell.
    """
    ids = frame.get("sig_id")
    block = frame[columns]
    text = [name for name in columns if not pd.api.types.is_numeric_dtype(block[name].dtype)]
    if text:
        converted = {name: _to_number(role, block[name], name, ids, expected) for name in text}
        block = block.assign(**converted)
    return block.to_numpy(dtype=dtype)


def _to_number(role: str, column: pd.Series, name: str, ids: pd.Series | None, expected: str) -> pd.Series:
    numbers = pd.to_numeric(column, errors="coerce")
    bad = (numbers.isna() & column.notna()).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise MoAError(
            f"{role}: column {name!r} has non-numeric value {show_value(column.iloc[row])} "
            f"at {where(ids, row)}; expected {expected}"
        )
    return numbers.astype(np.float64)


def check_finite(role: str, values: np.ndarray, columns: list[str], ids: pd.Series) -> None:
    """No NaN (an empty cell) and no infinity anywhere in `values`."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    row, col = _first_cell(bad)
    value = values[row, col]
    if np.isnan(value):
        found = "a missing value (empty or NaN)"
    else:
        found = f"an infinite value ({value}, or beyond float32 range)"
    n = int(bad.sum())
    more = f" ({n} such cells in all)" if n > 1 else ""
    raise MoAError(f"{role}: column {columns[col]!r} has {found} at {where(ids, row)}{more}; expected a finite float")


def check_binary(role: str, values: np.ndarray, columns: list[str], ids: pd.Series) -> None:
    """Every target is 0 or 1; NaN is an error, not a silent negative."""
    missing = np.isnan(values)
    if missing.any():
        row, col = _first_cell(missing)
        raise MoAError(
            f"{role}: target {columns[col]!r} has a missing value at {where(ids, row)}; expected 0 or 1"
        )
    bad = (values != 0) & (values != 1)
    if bad.any():
        row, col = _first_cell(bad)
        raise MoAError(
            f"{role}: target {columns[col]!r} has value {values[row, col]:g} at {where(ids, row)}; expected 0 or 1"
        )


def check_choice(role: str, name: str, column: pd.Series, allowed: Sequence[object], ids: pd.Series) -> None:
    """Every value of `column` is one of `allowed` (compared as parsed)."""
    expected = "one of " + ", ".join(show_value(value) for value in allowed)
    missing = is_blank(column)
    if missing.any():
        row = int(np.argmax(missing))
        raise MoAError(f"{role}: column {name!r} has a missing value at {where(ids, row)}; expected {expected}")
    bad = ~column.isin(allowed).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise MoAError(
            f"{role}: column {name!r} has value {show_value(column.iloc[row])} at {where(ids, row)}; "
            f"expected {expected}"
        )


def _first_cell(mask: np.ndarray) -> tuple[int, int]:
    """The first True cell in file order (row by row, then left to right)."""
    row = int(np.argmax(mask.any(axis=1)))
    return row, int(np.argmax(mask[row]))
