"""A parse cache: each source file's parsed and checked frame as an
uncompressed parquet file (read back ~10x faster than the CSV is parsed),
keyed by the SHA-1 of the file's bytes, so a changed file is never served
stale even when its size and mtime are kept. SHA-1 rather than blake2b: the
faster of the two on a 156 MB CSV (`python -m moa_lit.bench` prints both),
and the run's data fingerprint records the same digest, so each file is
hashed once per read. The cache is only a speed-up: a failure to read or
write it is logged at debug level and the file is parsed."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

logger = logging.getLogger("moa_lit.data")

# Bump when what is stored changes (columns, dtypes, validation).
FORMAT_VERSION = 2  # 2: keyed on content, not on size and mtime
FOLDER_NAME = ".moa_cache"


def content_sha1(path: Path) -> str:
    """The SHA-1 of a file's bytes (as stored: a .gz file's compressed bytes)."""
    digest = hashlib.sha1()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digest(*parts: object) -> str:
    return hashlib.sha1("\0".join(str(part) for part in parts).encode()).hexdigest()


def cache_folder(data_dir: Path, cache_dir: Path | None = None) -> Path | None:
    """`cache_dir` if given, else the first writable of `<data_dir>/.moa_cache/`
    and (a read-only data folder) `~/.cache/moa_lit/<hash of data_dir>/`; None: no caching."""
    candidates = [Path(cache_dir)] if cache_dir is not None else [data_dir / FOLDER_NAME]
    if cache_dir is None:
        try:
            candidates.append(Path.home() / ".cache" / "moa_lit" / _digest(data_dir.resolve())[:16])
        except (RuntimeError, KeyError):  # no home directory to be found
            pass
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
    logger.debug("parse cache off: none of %s is writable", ", ".join(map(str, candidates)))
    return None


def cached_frame(
    folder: Path | None, source: Path, kind: str, sha1: str, parse: Callable[[Path], pd.DataFrame]
) -> pd.DataFrame:
    """`parse(source)`, or the frame it returned last time for the same bytes
    (`sha1`) and the same `kind` of parse (e.g. the feature layout)."""
    if folder is None:
        return parse(source)
    # The prefix names the file and the parse, so a new entry deletes those of the file's older versions.
    prefix = f"{source.name}-{_digest(source.resolve(), kind)[:10]}-"
    entry = folder / f"{prefix}{_digest(FORMAT_VERSION, kind, sha1)[:16]}.parquet"
    if entry.is_file():
        try:
            frame = pd.read_parquet(entry, engine="pyarrow")
            logger.debug("parse cache hit: %s -> %s", source, entry.name)
            return frame
        except Exception as err:  # a damaged entry: parse again and overwrite it
            logger.debug("parse cache entry %s unreadable (%s); parsing again", entry, err)
    frame = parse(source)
    if content_sha1(source) != sha1:  # rewritten while parsed: not stored under the digest of other bytes
        return frame
    temp = folder / f".tmp-{os.getpid()}-{entry.name}"  # renamed into place once whole
    try:
        # Uncompressed, without dictionaries or statistics: random-like floats
        # do not compress, and this writes and reads fastest.
        frame.to_parquet(
            temp, engine="pyarrow", index=False, compression=None, use_dictionary=False, write_statistics=False
        )
        os.replace(temp, entry)
        for old in folder.glob(f"{prefix}*.parquet"):
            if old != entry:
                old.unlink(missing_ok=True)
    except Exception as err:
        logger.debug("parse cache write to %s failed (%s); continuing without it", entry, err)
    finally:
        temp.unlink(missing_ok=True)
    return frame
