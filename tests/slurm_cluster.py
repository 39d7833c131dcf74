"""A throwaway one-node SLURM cluster on loopback for tests: a munge daemon
with a fresh key, slurmctld and slurmd from Debian's ``slurm-wlm``, all with
their files in a temporary folder and on free ports; stopped and removed
afterwards. Client commands (sbatch, squeue, sacct) find it through the
``SLURM_CONF`` variable, which :func:`slurm_cluster` sets while it runs.

slurmd must run as root to start jobs, so the cluster is only started as
root (CI runs as root); elsewhere the test is skipped, saying why."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PARTITION = "moa"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")


class Unavailable(Exception):
    """Why no cluster can be started here (the test is skipped with it)."""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _binary(name: str) -> str:
    for folder in ("", "/usr/sbin/", "/usr/bin/"):
        path = shutil.which(name) if not folder else (folder + name if os.access(folder + name, os.X_OK) else None)
        if path:
            return path
    raise Unavailable(
        f"{name} not found; install Debian's slurm-wlm and munge packages "
        "(apt-get install -y slurm-wlm munge; .ci/run does this)"
    )


@contextmanager
def slurm_cluster(cpus: int | None = None) -> Iterator[dict]:
    """Yield ``{"partition", "cpus", "conf"}`` of a running one-node cluster."""
    paths = {name: _binary(name) for name in DAEMONS}
    if os.geteuid() != 0:
        raise Unavailable("slurmd must run as root to start jobs; run the tests as root (CI does)")
    cpus = cpus or os.cpu_count() or 1
    root = Path(tempfile.mkdtemp(prefix="moa-slurm-"))
    os.chmod(root, 0o700)
    node = socket.gethostname().split(".")[0]
    ctld_port, slurmd_port = _free_ports(2)
    key, sock = root / "munge.key", root / "munge.socket"
    key.write_bytes(os.urandom(128))
    os.chmod(key, 0o600)
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=moatest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[Path] = []

    def start(*cmd: str, pid_file: Path, log: Path) -> None:
        proc = subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise Unavailable(f"{Path(cmd[0]).name} did not start: {proc.stdout}{proc.stderr}{tail}".strip())
        started.append(pid_file)

    old_conf = os.environ.get("SLURM_CONF")
    try:
        start(paths["munged"], "--force", f"--key-file={key}", f"--socket={sock}", f"--pid-file={root}/munged.pid",
              f"--log-file={root}/log/munged.log", f"--seed-file={root}/munged.seed",
              pid_file=root / "munged.pid", log=root / "log/munged.log")
        start(paths["slurmctld"], "-f", str(conf), pid_file=root / "slurmctld.pid", log=root / "log/slurmctld.log")
        start(paths["slurmd"], "-f", str(conf), "-N", node, pid_file=root / "slurmd.pid", log=root / "log/slurmd.log")
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            proc = subprocess.run([paths["sinfo"], "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True)
            state = (proc.stdout + proc.stderr).strip()
            if state in ("idle", "mixed", "allocated"):
                break
            time.sleep(0.5)
        else:
            logs = "".join((root / "log" / f).read_text()[-1500:] for f in ("slurmctld.log", "slurmd.log")
                           if (root / "log" / f).exists())
            raise Unavailable(f"the SLURM node did not become idle within 60 s (sinfo: {state!r}) {logs}")
        os.environ["SLURM_CONF"] = str(conf)
        yield {"partition": PARTITION, "cpus": cpus, "conf": str(conf)}
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        for pid_file in reversed(started):
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, 15)
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
            except (OSError, ValueError):
                pass
        shutil.rmtree(root, ignore_errors=True)
