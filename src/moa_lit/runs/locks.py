"""The lock a process holds while it writes an output (a run folder, a
predictions file): a second writer gets one line naming the holder.

A POSIX record lock, not ``flock``: the system drops it when the holder ends
(a killed run leaves no lock to delete by hand), and NFS carries it between
machines. On Linux an open-file-description lock (``F_OFD_SETLK``), since a
``lockf`` lock is dropped when the process closes *any* descriptor of the
file (reading it to name the holder would release it)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import struct
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from moa_lit.errors import MoAError

log = logging.getLogger(__name__)

_HELD: set[str] = set()  # lock files this process holds
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _holder(text: str) -> tuple[dict | None, str]:
    """The lock file's record of its holder (None if unreadable), and the holder named for a message."""
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if not (isinstance(info, dict) and "pid" in info):
        return None, text.strip() or "another process"
    return info, f"process {info['pid']} on {info.get('host')} since {info.get('started')} ({info.get('command')})"


def _this_process() -> dict:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200]
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": started}


def _say_if_stale(text: str, what: str) -> None:
    """The lock file of a holder that ended without removing it (killed): said once."""
    info, holder = _holder(text)
    if info is None:
        return
    if info.get("host") != socket.gethostname():
        why = f"no longer holding it (it ended, or its host {info.get('host')} lost it)"
    else:
        try:
            os.kill(int(info["pid"]), 0)
            why = "no longer holding it"
        except ProcessLookupError:
            why = "no longer running"
        except PermissionError:  # alive, another user's
            why = "no longer holding it"
    log.warning("%s: took over the lock left by %s, %s", what, holder, why)


def _try_lock(fd: int) -> None:
    """An exclusive lock on the whole file, or OSError (EAGAIN/EACCES: held)."""
    if hasattr(fcntl, "F_OFD_SETLK"):
        # struct flock: l_type, l_whence, l_start, l_len (0: to the end), l_pid (0 for OFD locks)
        request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
            return
        except OSError as err:
            if err.errno != errno.EINVAL:  # EINVAL: a kernel without OFD locks
                raise
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


@contextmanager
def hold_lock(path: Path, what: str) -> Iterator[None]:
    """Hold ``path`` (a lock file, made if missing, removed when released)
    while ``what`` is written; MoAError naming the holder when it is held."""
    path = Path(path)
    key = os.path.abspath(path)
    if key in _HELD:
        raise MoAError(f"{what} is being written by this process already; write elsewhere")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _try_lock(fd)
        except OSError as err:
            text = os.read(fd, 1000).decode(errors="replace")
            os.close(fd)
            if err.errno in (errno.EACCES, errno.EAGAIN):
                raise MoAError(f"{what} is being written by {_holder(text)[1]}; wait for it to end, or write elsewhere") from None
            if err.errno in _NO_LOCKS:
                raise MoAError(
                    f"{path}: this file system cannot lock files ({os.strerror(err.errno)}), so a second writer "
                    "could not be kept out; write on a local disk or a file system mounted with locking"
                ) from None
            raise
        try:  # the holder may have removed the file between our open and lock
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    left = os.read(fd, 1000).decode(errors="replace")
    if left.strip():
        _say_if_stale(left, what)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_this_process()).encode(), 0)
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        except FileNotFoundError:  # the folder was deleted or moved
            pass
        os.close(fd)  # drops the lock
