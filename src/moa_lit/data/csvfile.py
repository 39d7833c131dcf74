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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

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
    check_not_disguised(path, role)
    try:
        with open_bytes(path, role) as stream:
            # utf-8-sig skips a BOM; newline="" lets csv handle both \n and \r\n.
            first = next(csv.reader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")), None)
    except UnicodeDecodeError:
        raise not_utf8(path, role) from None
    except csv.Error as err:
        raise MoAError(f"{role}: cannot read the header row ({err}): {path}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:  # a damaged .gz or .zip
        raise MoAError(f"{role}: cannot decompress ({err}): {path}") from None
    if not first or not any(field.strip() for field in first):
        raise MoAError(f"{role}: file has no header row (it is empty or starts with a blank line): {path}")
    return Header(raw=first, names=[clean_name(field) for field in first])


# The first bytes of compressed files, and the suffix pandas and moa-lit read them by.
MAGIC = ((b"\x1f\x8b", "gzip", ".gz"), (b"PK\x03\x04", "zip", ".zip"), (b"BZh", "bzip2", ".bz2"),
         (b"\xfd7zXZ\x00", "xz", ".xz"), (b"\x28\xb5\x2f\xfd", "zstd", ".zst"))


def check_not_disguised(path: Path, role: str) -> None:
    """A compressed file whose name does not say so (``train_features.csv``
    holding gzip bytes) is named as such, not reported as bad UTF-8."""
    with open(path, "rb") as stream:
        head = stream.read(8)
    for magic, kind, suffix in MAGIC:
        if head.startswith(magic) and path.suffix != suffix:
            supported = suffix in COMPRESSED_SUFFIXES
            fix = f"rename it to {path.name}{suffix}" if supported else "decompress it"
            raise MoAError(f"{role}: the file is {kind}-compressed but named {path.name}; {fix}: {path}")


@contextmanager
def open_bytes(path: Path, role: str) -> Iterator[IO[bytes]]:
    """The decompressed bytes of a plain, gzip or one-member zip file."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as stream:
            yield stream
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive, archive.open(_zip_member(archive, path, role)) as stream:
            yield stream
    else:
        with open(path, "rb") as stream:
            yield stream


def _zip_member(archive: zipfile.ZipFile, path: Path, role: str) -> zipfile.ZipInfo:
    """The one file inside a zip (pandas reads only one-member zips too)."""
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) != 1:
        names = ", ".join(info.filename for info in members[:5]) or "nothing"
        raise MoAError(f"{role}: a zip file must hold exactly one CSV, found {len(members)} ({names}): {path}")
    return members[0]


def not_utf8(path: Path, role: str) -> MoAError:
    """The error for a file that is not UTF-8, naming its first bad line.

    Parsers report a byte offset into their current buffer, which means
    nothing to the user; finding the line takes one more pass, on an error
    path only.
    """
    with open_bytes(path, role) as stream:
        for number, line in enumerate(stream, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                byte = line[err.start : err.start + 1].hex()
                return MoAError(
                    f"{role}: line {number} is not UTF-8 text (byte 0x{byte} at character {err.start + 1}); "
                    f"save the file as UTF-8: {path}"
                )
    return MoAError(f"{role}: not UTF-8 text: {path}")


# The types a caller can ask for; anything else is left to the parser.
ARROW_TYPES = {"str": pa.string(), "float32": pa.float32(), "int8": pa.int8()}


def parse_csv(path: Path, role: str, header: Header, types: Mapping[str, str]) -> pd.DataFrame:
    """Parse the whole file; `types` maps (cleaned) column names to 'str', 'float32' or 'int8'.

    First pyarrow with those types fixed, the path every valid file takes: on
    the 156 MB train file it needs about a third less CPU than
    `pd.read_csv(engine="pyarrow")`, which infers float64 columns and then
    converts them (1.6-2.0 s against 2.2-3.0 s of CPU time, measured
    interleaved on a 2-core machine). When a cell does not
    fit its type (a value like 'abc') or a row is malformed, the file is
    parsed again letting the parser infer numeric types, so that the value
    checks find the bad cell and name its row and column; pandas' C parser is
    the last resort, as it copes with short rows (NaN, named by the checks)
    and names the line of a row with too many fields.
    """
    text = [raw for raw, name in zip(header.raw, header.names) if types.get(name) == "str"]
    try:
        frame = _parse_typed(path, header, types)
    except (pa.ArrowException, ValueError, OSError, EOFError):  # bad cell, row or stream: find it the slow way
        frame = _parse_inferred(path, role, text)
    frame.columns = [clean_name(str(name)) for name in frame.columns]
    return frame


def _parse_typed(path: Path, header: Header, types: Mapping[str, str]) -> pd.DataFrame:
    # pyarrow sees the raw names (a BOM removed, whitespace kept).
    column_types = {raw: ARROW_TYPES[types[name]] for raw, name in zip(header.raw, header.names) if name in types}
    options = pcsv.ConvertOptions(column_types=column_types)
    if path.suffix == ".zip":  # pyarrow opens .gz itself, not .zip
        with open_bytes(path, path.name) as stream:
            table = pcsv.read_csv(stream, convert_options=options)
    else:
        table = pcsv.read_csv(path, convert_options=options)
    return table.to_pandas()


def _parse_inferred(path: Path, role: str, text_columns: list[str]) -> pd.DataFrame:
    dtype = {raw: "str" for raw in text_columns}
    try:
        return pd.read_csv(path, engine="pyarrow", dtype=dtype)
    except Exception:  # pyarrow's errors are not of one type; the C parser explains better
        return _parse_with_c_engine(path, role, dtype)


def _parse_with_c_engine(path: Path, role: str, dtype: dict[str, str]) -> pd.DataFrame:
    try:
        return pd.read_csv(path, engine="c", dtype=dtype, low_memory=False)
    except UnicodeDecodeError:
        raise not_utf8(path, role) from None
    except (pd.errors.ParserError, ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        reason = " ".join(str(err).split())  # one line, whatever the parser wrote
        reason = reason.removeprefix("Error tokenizing data. C error: ")
        raise MoAError(f"{role}: cannot parse as CSV: {reason}: {path}") from None
