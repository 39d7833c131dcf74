"""File-system faults as one line naming the path and the real cause: pandas,
for one, reports a full disk as ``[Errno 28] No space left on device`` with no
path at all."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from moa_lit.errors import MoAError

_CAUSES = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write to a writable folder",
    errno.EACCES: "permission denied; write to a folder you may write to",
    errno.EPERM: "operation not permitted; write to a folder you may write to",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder; expected a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EEXIST: "a file is where a folder is needed",
}
HANDLED_ERRNOS = frozenset(_CAUSES)


class FileSystemError(MoAError):
    """An OSError of the file system, told as ``<path>: <cause>``."""


def describe(err: OSError, path: str | os.PathLike | None = None) -> FileSystemError:
    """``err`` as one line; ``path``: the file meant (an OSError may name a
    temporary file or nothing)."""
    shown = path if path is not None else (err.filename if err.filename is not None else "(unknown path)")
    cause = _CAUSES.get(err.errno) or (err.strerror or str(err))
    name = errno.errorcode.get(err.errno or 0, "")
    return FileSystemError(f"{shown}: {cause} ({name})" if name else f"{shown}: {cause}")


def nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(folder: str | os.PathLike, key: str, shown: str | None = None) -> None:
    """``folder`` (made later if missing) can hold new files, checked before work
    starts. ``shown``: the setting as the user gave it (default ``key=folder``)."""
    folder = Path(folder).expanduser()
    shown = shown or f"{key}={folder}"
    if folder.exists() and not folder.is_dir():
        raise MoAError(f"{shown} is a file; expected a folder")
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise MoAError(f"{shown}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        cause = "is on a read-only file system" if read_only else "is not writable"
        raise MoAError(f"{shown}: {existing} {cause}; choose a writable folder")


def check_output_file(value: str, key: str) -> Path:
    if value.endswith(("/", os.sep)):
        raise MoAError(f"{key}={value} ends with '/', a folder; expected a file name, e.g. {value}predictions.csv")
    path = Path(value).expanduser()
    if path.is_dir():
        raise MoAError(f"{key}={value} is a folder; expected a file name, e.g. {path / 'predictions.csv'}")
    check_writable_folder(path.parent, key, shown=f"{key}={value}")
    return path
