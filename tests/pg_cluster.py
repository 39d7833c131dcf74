"""A throwaway PostgreSQL server on loopback for tests: ``initdb`` into a
temporary folder, ``pg_ctl start`` on a free port, removed afterwards.

PostgreSQL refuses to run as root, so under root (CI) the server runs as the
``postgres`` user that Debian's ``postgresql`` package creates."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class Unavailable(Exception):
    """Why no server can be started here (the test is skipped with it)."""


def server_bindir() -> Path:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's versioned folder."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    raise Unavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package "
        "(apt-get install -y postgresql; .ci/run does this)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server(user: str = "moa") -> Iterator[str]:
    """Yield the URL of a fresh, empty database; stop and delete it on exit."""
    bindir = server_bindir()
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and no 'postgres' user to run the server as") from None
        prefix = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp_path: that is private to the test's user.
    root = Path(tempfile.mkdtemp(prefix="moa-pg-"))
    data, log = root / "data", root / "server.log"
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = _free_port()

    def run(*cmd: str) -> None:
        proc = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stdout}{proc.stderr}{tail}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        try:
            yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
