"""A parse cache, so the second read of the same files takes a fraction of a second.

Each source file's parsed and validated frame is stored as an uncompressed
parquet file (reading one back is ~10x faster than parsing the CSV). An entry
is keyed by the SHA-1 of the file's bytes, what was parsed from it (`kind`,
e.g. the feature layout) and `FORMAT_VERSION`: any change to the content gives
a new key, also one that keeps the file's size and modification time, so a
stale entry is never read, only replaced. SHA-1 rather than blake2b: it was
the faster of the two on a 156 MB CSV (CPUs with SHA extensions; `python -m
moa_lit.bench` prints both), and the run's data fingerprint records the same
digest, so each file is hashed once per read.

Where: `<data_dir>/.moa_cache/`, else (a read-only data folder)
`~/.cache/moa_lit/<hash of data_dir>/`, else no caching at all. The cache is
only ever a speed-up: a failure to read or write it is logged at debug level
and the file is parsed as if there were no cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

logger = logging.getLogger("moa_lit.data")

# Bump when what is stored changes (columns, dtypes, validation), so entries
# written by an older moa_lit are not read back.
FORMAT_VERSION = 2  # 2: keyed on content, not on size and mtime
FOLDER_NAME = ".moa_cache"
CHUNK = 1 << 20


def content_sha1(path: Path) -> str:
    """The SHA-1 of a file's bytes (as stored: a .gz file's compressed bytes)."""
    digest = hashlib.sha1()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _digest(*parts: object) -> str:
    return hashlib.sha1("\0".join(str(part) for part in parts).encode()).hexdigest()


def default_folders(data_dir: Path) -> list[Path]:
    """Where the cache goes for `data_dir`, in order of preference."""
    folders = [data_dir / FOLDER_NAME]
    try:
        folders.append(Path.home() / ".cache" / "moa_lit" / _digest(data_dir.resolve())[:16])
    except (RuntimeError, KeyError):  # no home directory to be found
        pass
    return folders


def _usable(folder: Path) -> bool:
    """Whether a file can be created in `folder` (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
        os.close(handle)
        os.unlink(probe)
        return True
    except OSError:
        return False


class ParseCache:
    """Parsed frames of source files, stored in `folder` (None: no caching)."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    @classmethod
    def for_data_dir(cls, data_dir: Path, cache_dir: Path | None = None) -> ParseCache:
        """The cache in `cache_dir` if given, else in the first usable default folder."""
        candidates = [Path(cache_dir)] if cache_dir is not None else default_folders(Path(data_dir))
        for folder in candidates:
            if _usable(folder):
                return cls(folder)
        logger.debug("parse cache off: none of %s is writable", ", ".join(map(str, candidates)))
        return cls(None)

    def frame(
        self, source: Path, kind: str, parse: Callable[[Path], pd.DataFrame], sha1: str | None = None
    ) -> pd.DataFrame:
        """`parse(source)`, or the frame it returned last time for the same
        bytes. `sha1`: the file's content digest when the caller has it."""
        if self.folder is None:
            return parse(source)
        sha1 = sha1 or content_sha1(source)
        entry = self._entry(source, kind, sha1)
        cached = self._load(entry)
        if cached is not None:
            logger.debug("parse cache hit: %s -> %s", source, entry.name)
            return cached
        frame = parse(source)
        # A file rewritten while it was parsed: its frame is not stored under
        # the digest of other bytes (a miss costs a parse; this 0.2 s more).
        if content_sha1(source) == sha1:
            self._store(entry, frame)
        return frame

    def _entry(self, source: Path, kind: str, sha1: str) -> Path:
        source = source.resolve()
        # The prefix names the file and what was parsed, so an update can
        # delete the entries of older versions of that same file.
        prefix = f"{source.name}-{_digest(source, kind)[:10]}-"
        key = _digest(FORMAT_VERSION, kind, sha1)[:16]
        return self.folder / f"{prefix}{key}.parquet"

    def _load(self, entry: Path) -> pd.DataFrame | None:
        if not entry.is_file():
            return None
        try:
            return pd.read_parquet(entry, engine="pyarrow")
        except Exception as err:  # a damaged entry: parse again and overwrite it
            logger.debug("parse cache entry %s unreadable (%s); parsing again", entry, err)
            return None

    def _store(self, entry: Path, frame: pd.DataFrame) -> None:
        """Write atomically (temp file in the same folder, then rename) and drop stale entries."""
        temp = None
        try:
            handle, temp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".parquet")
            os.close(handle)
            # Uncompressed and without dictionaries or statistics: random-like
            # floats do not compress, and this writes and reads fastest.
            frame.to_parquet(
                temp, engine="pyarrow", index=False, compression=None, use_dictionary=False, write_statistics=False
            )
            os.replace(temp, entry)
            temp = None
            self._drop_stale(entry)
        except Exception as err:
            logger.debug("parse cache write to %s failed (%s); continuing without it", entry, err)
        finally:
            if temp is not None:
                Path(temp).unlink(missing_ok=True)

    @staticmethod
    def _drop_stale(entry: Path) -> None:
        prefix = entry.name[: entry.name.rindex("-") + 1]
        for old in entry.parent.glob(f"{prefix}*.parquet"):
            if old != entry:
                old.unlink(missing_ok=True)
