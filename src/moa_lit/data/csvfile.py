"""One CSV file of the Kaggle layout as text: which of `<name>`, `<name>.gz`,
`<name>.zip` holds it, its header row and its parsed body. Every failure is a
one-line `MoAError` that starts with the file name."""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from moa_lit.errors import MoAError

# A plain file wins over a compressed one; pandas reads all three.
COMPRESSED_SUFFIXES = (".gz", ".zip")
# The first bytes of compressed files, and the suffix pandas and moa-lit read them by.
MAGIC = ((b"\x1f\x8b", "gzip", ".gz"), (b"PK\x03\x04", "zip", ".zip"), (b"BZh", "bzip2", ".bz2"),
         (b"\xfd7zXZ\x00", "xz", ".xz"), (b"\x28\xb5\x2f\xfd", "zstd", ".zst"))
ARROW_TYPES = {"str": pa.string(), "float32": pa.float32(), "int8": pa.int8()}


def find_source(folder: Path, name: str) -> Path | None:
    for candidate in (name, *(name + suffix for suffix in COMPRESSED_SUFFIXES)):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def read_header(path: Path, role: str) -> list[str]:
    """The header's names without BOM or surrounding spaces; read with the `csv`
    module, as pandas would rename a second 'g-1' to 'g-1.1'."""
    if path.stat().st_size == 0:
        raise MoAError(f"{role}: file is empty (0 bytes): {path}; expected a CSV header and rows")
    with open(path, "rb") as stream:
        head = stream.read(8)
    for magic, kind, suffix in MAGIC:  # not reported as bad UTF-8
        if head.startswith(magic) and path.suffix != suffix:
            fix = f"rename it to {path.name}{suffix}" if suffix in COMPRESSED_SUFFIXES else "decompress it"
            raise MoAError(f"{role}: the file is {kind}-compressed but named {path.name}; {fix}: {path}")
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
    return [field.replace("\ufeff", "").strip() for field in first]


@contextmanager
def open_bytes(path: Path, role: str) -> Iterator[IO[bytes]]:
    """The decompressed bytes of a plain, gzip or one-member zip file."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as stream:
            yield stream
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:  # pandas reads only one-member zips too
                names = ", ".join(info.filename for info in members[:5]) or "nothing"
                raise MoAError(f"{role}: a zip file must hold exactly one CSV, found {len(members)} ({names}): {path}")
            with archive.open(members[0]) as stream:
                yield stream
    else:
        with open(path, "rb") as stream:
            yield stream


def not_utf8(path: Path, role: str) -> MoAError:
    """Names the first bad line: parsers report a byte offset into their
    buffer, which means nothing to the user (one more pass, on an error path)."""
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


def parse_csv(path: Path, role: str, names: list[str], types: Mapping[str, str]) -> pd.DataFrame:
    """The whole file, columns named `names` (as `read_header` gives them);
    `types` maps names to 'str', 'float32' or 'int8'.

    pyarrow with those types fixed is the path of every valid file: a third
    less CPU on the 156 MB train file than `pd.read_csv(engine="pyarrow")`,
    which infers float64 and converts. When a cell does not fit its type or a
    row is malformed, the file is parsed again with inferred types, so that the
    value checks name the bad cell; pandas' C parser is the last resort, as it
    reads short rows as NaN and names the line of a row with too many fields.
    """
    try:
        read = pcsv.ReadOptions(column_names=names, skip_rows=1)
        convert = pcsv.ConvertOptions(column_types={name: ARROW_TYPES[kind] for name, kind in types.items()})
        if path.suffix != ".zip":  # pyarrow opens .gz itself, not .zip
            return pcsv.read_csv(path, read, convert_options=convert).to_pandas()
        with open_bytes(path, role) as stream:
            return pcsv.read_csv(stream, read, convert_options=convert).to_pandas()
    except (pa.ArrowException, ValueError, OSError, EOFError):  # bad cell, row or stream: find it the slow way
        pass
    options = {"header": 0, "names": names, "dtype": {name: "str" for name, kind in types.items() if kind == "str"}}
    try:
        return pd.read_csv(path, engine="pyarrow", **options)
    except Exception:  # pyarrow's errors are not of one type; the C parser explains better
        pass
    try:
        return pd.read_csv(path, engine="c", low_memory=False, **options)
    except UnicodeDecodeError:
        raise not_utf8(path, role) from None
    except (pd.errors.ParserError, ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        reason = " ".join(str(err).split())  # one line, whatever the parser wrote
        reason = reason.removeprefix("Error tokenizing data. C error: ")
        raise MoAError(f"{role}: cannot parse as CSV: {reason}: {path}") from None
