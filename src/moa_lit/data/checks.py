"""Checks of a parsed file's header and values. Each raises a one-line
`MoAError` naming the file (`role`), the column and the row, counted from 1
below the header as in a spreadsheet, with its sig_id (unambiguous even where
a file has blank lines)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from moa_lit.errors import MoAError
from moa_lit.schema import ID


def quoted(names: Sequence[object], limit: int = 5) -> str:
    """`'a', 'b', 'c' and 4 more`: a short list that keeps messages to one line."""
    shown = ", ".join(repr(str(name)) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def show_value(value: object) -> str:
    """A cell value as the user typed it: strings quoted, numbers bare."""
    return repr(value) if isinstance(value, (str, bytes)) else str(value)


def where(ids: pd.Series | None, row: int) -> str:
    """'row 57 (sig_id id_0a1b2c3d4)' for the 0-based position `row`."""
    sig_id = None if ids is None else ids.iloc[row]
    return f"row {row + 1}" + (f" (sig_id {sig_id})" if isinstance(sig_id, str) and sig_id.strip() else "")


def describe_difference(names: Sequence[str], expected: Sequence[str]) -> str:
    """'missing 2 ('g-5', 'g-6'); unexpected 1 ('foo')', each in its own order; '' for the same names."""
    present, wanted = set(names), set(expected)
    missing = [name for name in expected if name not in present]
    unexpected = [name for name in names if name not in wanted]
    parts = [f"missing {len(missing)} ({quoted(missing)})"] if missing else []
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} ({quoted(unexpected)})")
    return "; ".join(parts)


def check_columns(role: str, names: list[str], expected: Sequence[str], hint: str = "") -> None:
    """The header holds exactly `expected`, in any order, each name once."""
    check_names(role, names)
    difference = describe_difference(names, expected)
    if not difference:
        return
    if not hint and len(names) == 1 and (";" in names[0] or "\t" in names[0]):  # the usual cause
        separator = "';'" if ";" in names[0] else "a tab"
        hint = f"the file seems to use {separator} as separator; expected ','"
    raise MoAError(f"{role}: header does not match the expected columns: {difference}" + (f"; {hint}" if hint else ""))


def check_names(role: str, names: list[str]) -> None:
    """Every column named (an unnamed first column is an index saved by pandas), each name once."""
    if "" in names:
        raise MoAError(
            f"{role}: column {names.index('') + 1} has no name (an index column saved by pandas, or a trailing comma?); "
            "expected every column to be named"
        )
    counts = Counter(names)
    duplicated = [name for name in names if counts[name] > 1]
    if duplicated:
        positions = [str(i + 1) for i, other in enumerate(names) if other == duplicated[0]]
        raise MoAError(
            f"{role}: duplicate column name {duplicated[0]!r} (columns {' and '.join(positions[:2])}); "
            "expected each column once"
        )


def is_blank(column: pd.Series) -> np.ndarray:
    """Missing cells: NaN, or empty text (pyarrow keeps '' in text columns)."""
    blank = column.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(column.dtype):
        blank = blank | (column.astype("str").str.strip() == "").to_numpy()
    return blank


def check_ids(role: str, ids: pd.Series) -> None:
    blank = is_blank(ids)
    if blank.any():
        raise MoAError(f"{role}: missing sig_id at {where(None, int(np.argmax(blank)))}; expected an id on every row")
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


def id_difference(ids: pd.Series, reference: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(sig_ids of `reference` absent from `ids`, sig_ids of `ids` absent from `reference`), each in file order."""
    here, there = ids.to_numpy(dtype=object), reference.to_numpy(dtype=object)
    return there[pd.Index(here).get_indexer(there) < 0], here[pd.Index(there).get_indexer(here) < 0]


def aligned(role: str, frame: pd.DataFrame, reference_role: str, reference_ids: pd.Series) -> pd.DataFrame:
    """`frame` (sig_id and values) without sig_id, its rows in the order of
    `reference_ids`, which must be the same sig_ids (checked both ways)."""
    ids, values = frame[ID], frame.drop(columns=ID)
    here, reference = ids.to_numpy(dtype=object), reference_ids.to_numpy(dtype=object)
    if len(here) == len(reference) and bool((here == reference).all()):
        return values.reset_index(drop=True)
    absent, extra = id_difference(ids, reference_ids)
    parts = [f"{len(absent)} sig_id(s) of {reference_role} are missing here (e.g. {absent[0]})"] if len(absent) else []
    if len(extra):
        parts.append(f"{len(extra)} sig_id(s) here are not in {reference_role} (e.g. {extra[0]})")
    if parts:
        raise MoAError(f"{role}: rows do not match {reference_role}: {'; '.join(parts)}; expected the same sig_ids")
    return values.take(pd.Index(here).get_indexer(reference)).reset_index(drop=True)


def numeric_matrix(role: str, frame: pd.DataFrame, columns: list[str], expected: str) -> np.ndarray:
    """The columns as a float32 matrix; a cell that is not a number is an error.

    A value beyond float32's range (1e39) becomes inf, reported by
    `check_finite`. Only a column the parser left as text (because some cell
    is not a number) is searched for that cell.
    """
    block = frame[columns]
    for name in columns:
        column = block[name]
        if pd.api.types.is_numeric_dtype(column.dtype):
            continue
        numbers = pd.to_numeric(column, errors="coerce")
        bad = (numbers.isna() & column.notna()).to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise MoAError(
                f"{role}: column {name!r} has non-numeric value {show_value(column.iloc[row])} "
                f"at {where(frame.get(ID), row)}; expected {expected}"
            )
        block = block.assign(**{name: numbers.astype(np.float64)})
    return block.to_numpy(dtype=np.float32)


def check_finite(role: str, values: np.ndarray, columns: list[str], ids: pd.Series) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = _first_cell(bad)
        value = values[row, col]
        infinite = f"an infinite value ({value}, or beyond float32 range)"
        found = "a missing value (empty or NaN)" if np.isnan(value) else infinite
        n = int(bad.sum())
        more = f" ({n} such cells in all)" if n > 1 else ""
        raise MoAError(f"{role}: column {columns[col]!r} has {found} at {where(ids, row)}{more}; expected a finite float")


def check_binary(role: str, values: np.ndarray, columns: list[str], ids: pd.Series) -> None:
    """Every target is 0 or 1; NaN is an error, not a silent negative."""
    for bad, found in ((np.isnan(values), "a missing value"), ((values != 0) & (values != 1), "value {:g}")):
        if bad.any():
            row, col = _first_cell(bad)
            found = found.format(values[row, col])
            raise MoAError(f"{role}: target {columns[col]!r} has {found} at {where(ids, row)}; expected 0 or 1")


def check_choice(role: str, name: str, column: pd.Series, allowed: Sequence[object], ids: pd.Series) -> None:
    """Every value of `column` is one of `allowed` (compared as parsed)."""
    expected = "one of " + ", ".join(show_value(value) for value in allowed)
    for bad, found in ((is_blank(column), "a missing value"), (~column.isin(allowed).to_numpy(), None)):
        if bad.any():
            row = int(np.argmax(bad))
            found = found or f"value {show_value(column.iloc[row])}"
            raise MoAError(f"{role}: column {name!r} has {found} at {where(ids, row)}; expected {expected}")


def _first_cell(mask: np.ndarray) -> tuple[int, int]:
    """The first True cell in file order (row by row, then left to right)."""
    row = int(np.argmax(mask.any(axis=1)))
    return row, int(np.argmax(mask[row]))
