"""Finding, opening and parsing one CSV file of the Kaggle layout.

Everything here is about the file as text: which of `<name>`, `<name>.gz`,
`<name>.zip` exists, its header row, and turning its body into a DataFrame.
What the values mean is checked in `checks.py`. Every failure is a one-line
`MoAError` that starts with the file name.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from moa_lit.errors import MoAError

# A plain file wins over a compressed one; pandas reads all three.
COMPRESSED_SUFFIXES = (".gz", ".zip")

BOM = "\ufeff"


def find_source(folder: Path, name: str) -> Path | None:
    """The file that holds `name` in `folder`: `name`, else `name.gz`, else `name.zip`."""
    for candidate in (name, *(name + suffix for suffix in COMPRESSED_SUFFIXES)):
        path = folder / candidate
        if path.is_file():
            return path
    return None


def clean_name(raw: str) -> str:
    """A header name as the user meant it: no BOM, no surrounding whitespace."""
    return raw.replace(BOM, "").strip()


class Header(NamedTuple):
    """A file's first row: `raw` as pandas will see it, `names` as meant."""

    raw: list[str]
    names: list[str]


def read_header(path: Path, role: str) -> Header:
    """The file's header row.

    Read with the `csv` module rather than pandas so that duplicate names are
    seen as they are (pandas renames the second 'g-1' to 'g-1.1').
    """
    if path.stat().st_size == 0:
        raise MoAError(f"{role}: file is empty (0 bytes): {path}; expected a CSV header and rows")
    try:
        first = _first_row(path, role)
    except UnicodeDecodeError as err:
        raise MoAError(f"{role}: not UTF-8 text ({err.reason} at byte {err.start}): {path}") from None
    except csv.Error as err:
        raise MoAError(f"{role}: cannot read the header row ({err}): {path}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:  # a damaged .gz or .zip
        raise MoAError(f"{role}: cannot decompress ({err}): {path}") from None
    if not first or not any(field.strip() for field in first):
        raise MoAError(f"{role}: file has no header row (it is empty or starts with a blank line): {path}")
    return Header(raw=first, names=[clean_name(field) for field in first])


def _first_row(path: Path, role: str) -> list[str] | None:
    """The first CSV row of a plain, gzip or one-member zip file."""
    # utf-8-sig skips a BOM; newline="" lets csv handle both \n and \r\n.
    text = dict(encoding="utf-8-sig", newline="")
    if path.suffix == ".gz":
        with gzip.open(path, "rt", **text) as stream:
            return next(csv.reader(stream), None)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive, archive.open(_zip_member(archive, path, role)) as raw:
            return next(csv.reader(io.TextIOWrapper(raw, **text)), None)
    with open(path, **text) as stream:
        return next(csv.reader(stream), None)


def _zip_member(archive: zipfile.ZipFile, path: Path, role: str) -> zipfile.ZipInfo:
    """The one file inside a zip (pandas reads only one-member zips too)."""
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) != 1:
        names = ", ".join(info.filename for info in members[:5]) or "nothing"
        raise MoAError(f"{role}: a zip file must hold exactly one CSV, found {len(members)} ({names}): {path}")
    return members[0]


def parse_csv(path: Path, role: str, header: Header, text_columns: Iterable[str]) -> pd.DataFrame:
    """Parse the whole file; the (cleaned) `text_columns` stay strings.

    pyarrow's multi-threaded parser reads the 156 MB train file in about a
    second. It refuses a few malformed files (a row with too few or too many
    fields) where pandas' C parser either copes (short rows become NaN, which
    the value checks then name by row and column) or reports the line number,
    so the C parser is the fallback rather than the first choice.
    """
    text_columns = set(text_columns)
    # pandas matches dtype keys against the raw names, whitespace and all.
    dtype = {raw: "str" for raw, name in zip(header.raw, header.names) if name in text_columns}
    try:
        frame = pd.read_csv(path, engine="pyarrow", dtype=dtype)
    except Exception:  # pyarrow's errors are not one type; the C parser explains better
        frame = _parse_with_c_engine(path, role, dtype)
    frame.columns = [clean_name(str(name)) for name in frame.columns]
    return frame


def _parse_with_c_engine(path: Path, role: str, dtype: dict[str, str]) -> pd.DataFrame:
    try:
        return pd.read_csv(path, engine="c", dtype=dtype, low_memory=False)
    except UnicodeDecodeError as err:
        raise MoAError(f"{role}: not UTF-8 text ({err.reason} at byte {err.start}): {path}") from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        reason = " ".join(str(err).split())  # one line, whatever the parser wrote
        reason = reason.removeprefix("Error tokenizing data. C error: ")
        raise MoAError(f"{role}: cannot parse as CSV: {reason}: {path}") from None
